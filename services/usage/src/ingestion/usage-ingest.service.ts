import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import type { UsageEvent } from '@parley/contracts';
import { OutboxRelay, type BatchItem, type BatchVerdict } from '@parley/kit';
import { BotDirectory } from '../access/bot-directory';
import { BudgetWatch } from '../budgets/budget-watch';
import { QuotaCounters } from '../budgets/quota-counters';
import { applyEvent, priced, type EventOutcome, type RecordState } from '../records/record-state';
import { UsageLedger, recordKey, type RecordChange } from '../records/usage-ledger';
import { verdictsByBot } from './bot-verdicts';
import { UsageMetrics } from './usage-metrics';

/**
 * Folds a batch of usage events into their records in one transaction: lock the records the
 * batch names, apply each event in stream order (status only moves forward, the first
 * terminal status wins, a repeat changes nothing), price what changed, write records,
 * rollup and daily counters together, and announce any budget this crossed. A redelivered
 * batch finds its work done and changes nothing: exactly once in effect.
 */
@Injectable()
export class UsageIngest {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(UsageLedger) private readonly ledger: UsageLedger,
    @Inject(BudgetWatch) private readonly budgets: BudgetWatch,
    @Inject(QuotaCounters) private readonly counters: QuotaCounters,
    @Inject(BotDirectory) private readonly bots: BotDirectory,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
    @Inject(UsageMetrics) private readonly metrics: UsageMetrics,
  ) {}

  async ingest(items: BatchItem<UsageEvent>[]): Promise<BatchVerdict[]> {
    const verdicts = await verdictsByBot(this.bots, items);
    const accepted = items
      .filter((_, i) => verdicts[i].ok)
      .sort((a, b) => a.meta.streamSequence - b.meta.streamSequence);
    if (accepted.length === 0) return verdicts;

    const now = new Date();
    const result = await this.orm.em.fork().transactional(async (tx) => {
      await this.ledger.lockPricing(tx, 'shared');
      const keys = [...new Map(accepted.map((i) => [recordKey(key(i.event)), key(i.event)])).entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, k]) => k);
      const before = await this.ledger.lockRecords(tx, keys);
      const current = new Map<string, RecordState>(before);
      const outcomes = new Map<EventOutcome, number>();
      for (const item of accepted) {
        const id = recordKey(key(item.event));
        const { state, outcome } = applyEvent(current.get(id), item.event, now);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        current.set(id, state);
      }
      const touched = [...current.entries()].filter(([id, state]) => before.get(id) !== state);
      const book = await this.ledger.priceBook(
        tx,
        touched.map(([, s]) => s),
      );
      const changes: RecordChange[] = touched.map(([id, state]) => ({
        before: before.get(id),
        after: priced(state, book),
      }));
      const deltas = await this.ledger.write(tx, changes);
      const announced = await this.budgets.check(tx, [...new Set(changes.map((c) => c.after.botId))], now);
      return { outcomes, daily: deltas.dailyRows(), announced };
    });

    this.metrics.committed(
      'usage',
      accepted.map((i) => i.meta.storedAt),
      result.outcomes,
    );
    if (result.announced > 0) {
      this.metrics.budgetsExceeded.inc(result.announced);
      this.outbox.kick();
    }
    await this.counters.add(result.daily);
    return verdicts;
  }
}

const key = (e: UsageEvent) => ({ botId: e.bot_id, requestId: e.request_id });

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import type { UsageEvent } from '@parley/contracts';
import { type BatchItem, type BatchVerdict } from '@parley/kit';
import { OutboxRelay, allowLongStatements } from '@parley/kit/database';
import { BotDirectory } from '../access/bot-directory';
import { BudgetWatch } from '../budgets/budget-watch';
import { QuotaCounters } from '../budgets/quota-counters';
import { applyEvent, priced, type EventOutcome, type RecordState } from '../records/record-state';
import { UsageLedger, recordKey, type RecordChange } from '../records/usage-ledger';
import { verdictsByBot } from './bot-verdicts';
import { UsageMetrics } from './usage-metrics';

/**
 * Folds a batch of usage events into their records in one transaction: insert the records
 * that are new and lock those that exist, apply each event in stream order (status only
 * moves forward, the first terminal status wins, a repeat changes nothing), price what
 * changed, write records, rollup and daily counters together, and announce any budget this
 * crossed. A redelivered batch finds its work done and changes nothing: exactly once in effect.
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
    const events = new Map<string, UsageEvent[]>();
    for (const item of accepted) {
      const id = recordKey(key(item.event));
      const list = events.get(id);
      if (list) list.push(item.event);
      else events.set(id, [item.event]);
    }
    const prices = await this.ledger.book(this.orm.em.fork());
    const result = await this.orm.em.fork().transactional(async (tx) => {
      await allowLongStatements(tx);
      // Each request as the batch would make it from nothing, priced once: what `claim` inserts.
      const made = new Map(
        [...events].map(([id, list]) => {
          const folded = fold(undefined, list, now);
          return [id, { outcomes: folded.outcomes, state: priced(folded.state as RecordState, prices.book) }];
        }),
      );
      const { inserted, existing } = await this.ledger.claim(
        tx,
        [...made.values()].map((m) => m.state),
      );
      const outcomes = new Map<EventOutcome, number>();
      const changes: RecordChange[] = [];
      for (const [id, list] of events) {
        if (inserted.has(id)) {
          const { state, outcomes: each } = made.get(id) as Folded & { state: RecordState };
          for (const outcome of each) outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          changes.push({ before: undefined, after: state });
          continue;
        }
        const before = existing.get(id);
        const { state, outcomes: each } = fold(before, list, now);
        for (const outcome of each) outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        if (state && state !== before) changes.push({ before, after: priced(state, prices.book) });
      }
      const { daily, budgeted } = await this.ledger.write(tx, changes, prices);
      const announced = budgeted.length > 0 ? await this.budgets.check(tx, budgeted, now) : 0;
      return { outcomes, daily, announced };
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
    // The counters are a cache of what just committed: updated beside the next batch, not before it.
    void this.counters.record(result.daily);
    return verdicts;
  }
}

const key = (e: UsageEvent) => ({ botId: e.bot_id, requestId: e.request_id });

interface Folded {
  state: RecordState | undefined;
  outcomes: EventOutcome[];
}

/** One request's events of a batch, applied in stream order to its record as it stands. */
function fold(base: RecordState | undefined, events: UsageEvent[], now: Date): Folded {
  let state = base;
  const outcomes: EventOutcome[] = [];
  for (const event of events) {
    const applied = applyEvent(state, event, now);
    state = applied.state;
    outcomes.push(applied.outcome);
  }
  return { state, outcomes };
}

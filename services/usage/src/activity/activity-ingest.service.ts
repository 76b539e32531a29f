import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type RequiredEntityData } from '@mikro-orm/postgresql';
import type { ActivityEvent } from '@parley/contracts';
import type { BatchItem, BatchVerdict } from '@parley/kit';
import { BotDirectory } from '../access/bot-directory';
import { verdictsByBot } from '../ingestion/bot-verdicts';
import { UsageMetrics } from '../ingestion/usage-metrics';
import { chunked } from '../records/usage-ledger';
import { ActivityEventEntity, type ActivityEventRow } from './activity-event.entity';

/** Stores activity events in bulk; `(bot_id, event_id)` seen before is a duplicate, counted once. */
@Injectable()
export class ActivityIngest {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(BotDirectory) private readonly bots: BotDirectory,
    @Inject(UsageMetrics) private readonly metrics: UsageMetrics,
  ) {}

  async ingest(items: BatchItem<ActivityEvent>[]): Promise<BatchVerdict[]> {
    const verdicts = await verdictsByBot(this.bots, items);
    const receivedAt = new Date();
    const rows = new Map<string, RequiredEntityData<ActivityEventRow>>();
    let accepted = 0;
    items.forEach((item, i) => {
      if (!verdicts[i].ok) return;
      accepted += 1;
      const e = item.event;
      const id = `${e.bot_id}\u0000${e.event_id}`;
      if (rows.has(id)) return;
      rows.set(id, {
        botId: e.bot_id,
        eventId: e.event_id,
        requestId: e.request_id ?? null,
        eventType: e.event_type,
        channel: e.channel ?? null,
        detail: e.detail ?? null,
        metadata: e.metadata ?? null,
        occurredAt: new Date(e.occurred_at),
        receivedAt,
      });
    });
    if (accepted === 0) return verdicts;
    const em = this.orm.em.fork();
    let inserted = 0;
    await em.transactional(async (tx) => {
      for (const chunk of chunked([...rows.values()], 9)) {
        const stored = await tx
          .createQueryBuilder(ActivityEventEntity)
          .insert(chunk)
          .onConflict(['botId', 'eventId'])
          .ignore()
          .returning(['botId'])
          .execute('all');
        inserted += stored.length;
      }
    });
    this.metrics.committed(
      'activity',
      items.filter((_, i) => verdicts[i].ok).map((i) => i.meta.storedAt),
      new Map([
        ['inserted', inserted],
        ['duplicate', accepted - inserted],
      ]),
    );
    return verdicts;
  }
}

import { Inject, Injectable } from '@nestjs/common';
import type { ActivityEvent } from '@parley/contracts';
import type { BatchItem, BatchVerdict } from '@parley/kit';
import { BotDirectory } from '../access/bot-directory';
import { verdictsByBot } from '../ingestion/bot-verdicts';
import { UsageMetrics } from '../ingestion/usage-metrics';
import { ActivityRepository, type NewActivityRow } from './activity.repository';

/** Stores activity events in one statement; `(bot_id, event_id)` seen before is a duplicate, counted once. */
@Injectable()
export class ActivityIngest {
  constructor(
    @Inject(ActivityRepository) private readonly activity: ActivityRepository,
    @Inject(BotDirectory) private readonly bots: BotDirectory,
    @Inject(UsageMetrics) private readonly metrics: UsageMetrics,
  ) {}

  async ingest(items: BatchItem<ActivityEvent>[]): Promise<BatchVerdict[]> {
    const verdicts = await verdictsByBot(this.bots, items);
    const receivedAt = new Date();
    const rows = new Map<string, NewActivityRow>();
    let accepted = 0;
    items.forEach((item, i) => {
      if (!verdicts[i].ok) return;
      accepted += 1;
      const e = item.event;
      const id = `${e.bot_id}\u0000${e.event_id}`;
      if (rows.has(id)) return;
      rows.set(id, {
        bot_id: e.bot_id,
        event_id: e.event_id,
        request_id: e.request_id ?? null,
        event_type: e.event_type,
        channel: e.channel ?? null,
        detail: e.detail ?? null,
        metadata: e.metadata ?? null,
        occurred_at: e.occurred_at,
        received_at: receivedAt,
      });
    });
    if (accepted === 0) return verdicts;
    const inserted = await this.activity.insertNew([...rows.values()]);
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

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import type { ActivityEvent } from '@parley/contracts';
import type { BatchItem, BatchVerdict } from '@parley/kit';
import { BotDirectory } from '../access/bot-directory';
import { verdictsByBot } from '../ingestion/bot-verdicts';
import { UsageMetrics } from '../ingestion/usage-metrics';

/** Stores activity events in one statement; `(bot_id, event_id)` seen before is a duplicate, counted once. */
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
    const rows = new Map<string, Record<string, unknown>>();
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
    const [{ inserted }] = await this.orm.em.fork().execute<{ inserted: number }[]>(
      `with stored as (
         insert into activity_events (bot_id, event_id, request_id, event_type, channel, detail, metadata, occurred_at, received_at)
         select * from jsonb_to_recordset(?::jsonb) as a(bot_id uuid, event_id text, request_id text, event_type text,
           channel text, detail text, metadata jsonb, occurred_at timestamptz, received_at timestamptz)
         on conflict (bot_id, event_id) do nothing
         returning 1)
       select count(*)::int as inserted from stored`,
      [JSON.stringify([...rows.values()])],
    );
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

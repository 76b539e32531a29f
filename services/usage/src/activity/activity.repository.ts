import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { allowLongStatements, keysetSql, type KeysetList, type KeyValues } from '@parley/kit/database';
import { ActivityEventEntity, type ActivityEventRow } from './activity-event.entity';

/** A bot's activity, newest first. */
export const ACTIVITY_NEWEST_FIRST: KeysetList = {
  name: 'activity',
  keys: [
    { column: 'occurred_at', type: 'timestamp', order: 'desc' },
    { column: 'event_id', type: 'text', order: 'desc' },
  ],
};

/** An activity event to store, in the columns' names. */
export interface NewActivityRow {
  bot_id: string;
  event_id: string;
  request_id: string | null;
  event_type: string;
  channel: string | null;
  detail: string | null;
  metadata: object | null;
  occurred_at: string;
  received_at: Date;
}

/** Activity events. */
@Injectable()
export class ActivityRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  /** Stores the events in one statement; answers how many were new (an event seen before is skipped). */
  async insertNew(rows: NewActivityRow[]): Promise<number> {
    // The ingestion consumer's batch, which no caller waits on: the background statement timeout.
    const [{ inserted }] = await this.orm.em.fork().transactional(async (tx) => {
      await allowLongStatements(tx);
      return tx.execute<{ inserted: number }[]>(
        `with stored as (
         insert into activity_events (bot_id, event_id, request_id, event_type, channel, detail, metadata, occurred_at, received_at)
         select * from jsonb_to_recordset(?::jsonb) as a(bot_id uuid, event_id text, request_id text, event_type text,
           channel text, detail text, metadata jsonb, occurred_at timestamptz, received_at timestamptz)
         on conflict (bot_id, event_id) do nothing
         returning 1)
       select count(*)::int as inserted from stored`,
        [JSON.stringify(rows)],
      );
    });
    return inserted;
  }

  /** A bot's events (of one type, if given) after a position of ACTIVITY_NEWEST_FIRST, up to `take`. */
  async listPage(
    filters: { bot_id: string; event_type?: string },
    position: { after?: KeyValues; take: number },
  ): Promise<ActivityEventRow[]> {
    const conditions = ['bot_id = ?'];
    const params: unknown[] = [filters.bot_id];
    if (filters.event_type) {
      conditions.push('event_type = ?');
      params.push(filters.event_type);
    }
    if (position.after) {
      const after = keysetSql(ACTIVITY_NEWEST_FIRST, position.after);
      conditions.push(after.sql);
      params.push(...after.params);
    }
    params.push(position.take);
    const em = this.orm.em.fork();
    const rows = await em.execute<Record<string, unknown>[]>(
      `select * from activity_events where ${conditions.join(' and ')}
       order by occurred_at desc, event_id desc limit ?`,
      params,
    );
    return rows.map((r) => em.map(ActivityEventEntity, r));
  }
}

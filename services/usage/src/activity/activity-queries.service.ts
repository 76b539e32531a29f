import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import {
  ACTIVITY_PAGE_BYTES,
  decodeCursor,
  encodeCursor,
  itemsWithin,
  type ActivityView,
  type CursorPage,
  type Principal,
} from '@parley/contracts';
import { UsageAccess } from '../access/usage-access';
import { ActivityEventEntity, type ActivityEventRow } from './activity-event.entity';

function activityView(a: ActivityEventRow): ActivityView {
  return {
    bot_id: a.botId,
    event_id: a.eventId,
    request_id: a.requestId ?? null,
    event_type: a.eventType,
    channel: a.channel ?? null,
    detail: a.detail ?? null,
    metadata: a.metadata ?? null,
    occurred_at: a.occurredAt.toISOString(),
    received_at: a.receivedAt.toISOString(),
  };
}

@Injectable()
export class ActivityQueries {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(UsageAccess) private readonly access: UsageAccess,
  ) {}

  /** A bot's activity, newest first (read right on the bot, or its own key). */
  async list(
    actor: Principal,
    q: { bot_id: string; event_type?: string; limit: number; cursor?: string },
  ): Promise<CursorPage<ActivityView>> {
    await this.access.requireBot(actor, q.bot_id, 'read');
    const conditions = ['bot_id = ?'];
    const params: unknown[] = [q.bot_id];
    if (q.event_type) {
      conditions.push('event_type = ?');
      params.push(q.event_type);
    }
    if (q.cursor) {
      const [occurredAt, eventId] = decodeCursor(q.cursor, 2);
      conditions.push('(occurred_at, event_id) < (?, ?)');
      params.push(new Date(String(occurredAt)), eventId);
    }
    params.push(q.limit + 1);
    const em = this.orm.em.fork();
    const rows = await em.execute<Record<string, unknown>[]>(
      `select * from activity_events where ${conditions.join(' and ')}
       order by occurred_at desc, event_id desc limit ?`,
      params,
    );
    const views = rows.slice(0, q.limit).map((r) => activityView(em.map(ActivityEventEntity, r)));
    // An event may carry 64 KiB: a page also stops at ACTIVITY_PAGE_BYTES.
    const fit = itemsWithin(views, ACTIVITY_PAGE_BYTES);
    const items = views.slice(0, fit);
    const last = items.at(-1);
    return {
      items,
      next_cursor: rows.length > fit && last ? encodeCursor([last.occurred_at, last.event_id]) : null,
    };
  }
}

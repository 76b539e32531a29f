import { Inject, Injectable } from '@nestjs/common';
import { ACTIVITY_PAGE_BYTES, type ActivityView, type CursorPage, type Principal } from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { UsageAccess } from '../access/usage-access';
import type { ActivityEventRow } from './activity-event.entity';
import { ACTIVITY_NEWEST_FIRST, ActivityRepository } from './activity.repository';

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
    @Inject(ActivityRepository) private readonly activity: ActivityRepository,
    @Inject(UsageAccess) private readonly access: UsageAccess,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  /** A bot's activity, newest first (read right on the bot, or its own key). */
  async list(
    actor: Principal,
    q: { bot_id: string; event_type?: string; limit: number; cursor?: string },
  ): Promise<CursorPage<ActivityView>> {
    await this.access.requireBot(actor, q.bot_id, 'read');
    const filters = { bot_id: q.bot_id, event_type: q.event_type };
    return this.keyset.page(
      ACTIVITY_NEWEST_FIRST,
      q,
      { actor, filters },
      (position) => this.activity.listPage(filters, position),
      // An event may carry 64 KiB: a page also stops at ACTIVITY_PAGE_BYTES.
      { view: activityView, key: (a) => [a.occurredAt.toISOString(), a.eventId], budget: ACTIVITY_PAGE_BYTES },
    );
  }
}

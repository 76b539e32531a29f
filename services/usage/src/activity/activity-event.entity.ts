import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';
import type { JsonObject } from '@parley/contracts';

/** One activity event a bot reported; `(bot_id, event_id)` is its identity. */
export const ActivityEventEntity = defineEntity({
  name: 'ActivityEvent',
  tableName: 'activity_events',
  properties: {
    botId: p.uuid().primary(),
    eventId: p.string().length(200).primary(),
    requestId: p.string().length(200).nullable(),
    eventType: p.string().length(64),
    channel: p.string().length(64).nullable(),
    detail: p.text().nullable(),
    metadata: p.json<JsonObject>().nullable(),
    occurredAt: p.datetime(),
    receivedAt: p.datetime(),
  },
  indexes: [
    {
      name: 'activity_events_bot_time_idx',
      expression:
        'create index "activity_events_bot_time_idx" on "activity_events" ("bot_id", "occurred_at" desc, "event_id" desc)',
    },
    {
      name: 'activity_events_bot_type_time_idx',
      expression:
        'create index "activity_events_bot_type_time_idx" on "activity_events" ("bot_id", "event_type", "occurred_at" desc, "event_id" desc)',
    },
  ],
});
export type ActivityEventRow = InferEntity<typeof ActivityEventEntity>;

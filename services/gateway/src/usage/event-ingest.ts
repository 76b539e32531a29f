import { Inject, Injectable } from '@nestjs/common';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/transport-node';
import { SpanKind, trace } from '@opentelemetry/api';
import { z } from 'zod';
import {
  MAX_EVENTS_PER_POST,
  ParleyError,
  fieldErrors,
  type EventTimeLimits,
  type FieldError,
  type Principal,
} from '@parley/contracts';
import { Nats, eventTimeLimits, recordError, traceHeaders } from '@parley/kit';
import { GATEWAY_CONFIG, type GatewayConfig } from '../config';

const tracer = trace.getTracer('@parley/gateway/usage');
const PUBLISH_TIMEOUT_MS = 10_000;

/**
 * The body of an ingestion route as the OpenAPI document shows it: one event, or `{ events }`.
 * EventIngest checks it event by event with the same event schema, naming `events.<i>.<field>`.
 */
export function eventsBodySchema<S extends z.ZodType>(event: S) {
  return z.union([event, z.object({ events: z.array(event).min(1).max(MAX_EVENTS_PER_POST) }).strict()]);
}

export interface EventKind<S extends z.ZodType> {
  schema: S;
  timeProblems: (event: z.output<S>, now: number, limits: EventTimeLimits) => FieldError[];
  subject: (event: z.output<S>) => string;
  msgId: (event: z.output<S>) => string;
}

/**
 * HTTP ingestion for bots that do not speak NATS: the whole body is validated first (one
 * event or `{ events: [...] }`; any bad event is a 400 naming its index, and nothing is
 * published), every event must be the calling bot's own, then each goes to JetStream with the
 * same Nats-Msg-Id a NATS client would use; the answer comes once the stream has stored all.
 */
@Injectable()
export class EventIngest {
  private readonly js: JetStreamClient;
  private readonly limits: EventTimeLimits;

  constructor(
    @Inject(Nats) private readonly nats: Nats,
    @Inject(GATEWAY_CONFIG) config: GatewayConfig,
  ) {
    this.js = jetstream(nats.connection);
    this.limits = eventTimeLimits(config);
  }

  async ingest<S extends z.ZodType>(
    actor: Principal,
    body: unknown,
    kind: EventKind<S>,
  ): Promise<{ accepted: number; duplicates: number }> {
    const events = this.validate(body, kind);
    if (actor.type !== 'bot') {
      throw new ParleyError('FORBIDDEN', "events are reported with the bot's API key (X-API-Key)");
    }
    events.forEach((event, i) => {
      const botId = (event as { bot_id: string }).bot_id;
      if (botId !== actor.id) {
        throw new ParleyError('FORBIDDEN', `event ${i} is for bot ${botId}, not the calling bot`);
      }
    });
    return this.publish(events, kind);
  }

  private validate<S extends z.ZodType>(body: unknown, kind: EventKind<S>): z.output<S>[] {
    if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new ParleyError('VALIDATION_FAILED', 'the body is one event or { "events": [...] }', {
        errors: [{ field: 'body', message: 'one event or { "events": [...] }' }],
      });
    }
    const batch = 'events' in body;
    const list: unknown = batch ? (body as { events: unknown }).events : [body];
    if (batch && Object.keys(body).length > 1) {
      throw problems([{ field: 'body', message: 'only "events" may stand beside a batch' }]);
    }
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_EVENTS_PER_POST) {
      throw problems([{ field: 'events', message: `1 to ${MAX_EVENTS_PER_POST} events` }]);
    }
    const now = Date.now();
    const errors: FieldError[] = [];
    const events: z.output<S>[] = [];
    list.forEach((raw, i) => {
      const root = batch ? `events.${i}` : undefined;
      const parsed = kind.schema.safeParse(raw);
      if (!parsed.success) {
        errors.push(...fieldErrors(parsed.error, root));
        return;
      }
      const late = kind.timeProblems(parsed.data, now, this.limits);
      errors.push(...late.map((e) => ({ field: root ? `${root}.${e.field}` : e.field, message: e.message })));
      events.push(parsed.data);
    });
    if (errors.length > 0) throw problems(errors);
    return events;
  }

  private async publish<S extends z.ZodType>(
    events: z.output<S>[],
    kind: EventKind<S>,
  ): Promise<{ accepted: number; duplicates: number }> {
    return tracer.startActiveSpan(
      `${kind.subject(events[0]).split('.').slice(0, 2).join('.')} publish`,
      {
        kind: SpanKind.PRODUCER,
        attributes: { 'messaging.system': 'nats', 'messaging.batch.message_count': events.length },
      },
      async (span) => {
        try {
          // Refused at once while NATS is away, and when the connection drops meanwhile: a
          // retry with the same ids is safe, whatever part of the batch the stream already has.
          const acks = await this.nats.whileConnected(() =>
            Promise.all(
              events.map((event) =>
                this.js.publish(this.nats.subject(kind.subject(event)), JSON.stringify(event), {
                  msgID: kind.msgId(event),
                  headers: traceHeaders(),
                  timeout: PUBLISH_TIMEOUT_MS,
                }),
              ),
            ),
          );
          const duplicates = acks.filter((a) => a.duplicate).length;
          return { accepted: events.length, duplicates };
        } catch (error) {
          recordError(span, error);
          if (error instanceof ParleyError) throw error;
          if (error instanceof natsErrors.TimeoutError) {
            throw new ParleyError('UPSTREAM_TIMEOUT', 'JetStream did not confirm the events in time; send them again');
          }
          const why = error instanceof Error ? error.message : String(error);
          throw new ParleyError('UPSTREAM_UNAVAILABLE', `the events could not be stored (${why}); send them again`, {
            cause: error,
          });
        } finally {
          span.end();
        }
      },
    );
  }
}

function problems(errors: FieldError[]): ParleyError {
  return new ParleyError('VALIDATION_FAILED', errors.map((e) => `${e.field}: ${e.message}`).join('; '), { errors });
}

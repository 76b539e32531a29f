import {
  createInbox,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { z } from 'zod';
import { Headers, MAX_WIRE_JSON_DEPTH, ParleyError } from '@parley/contracts';
import type { Metrics } from '../observability/metrics';
import type { Nats } from './nats';

/** Room left in a message for headers (trace context, chunk markers) beside the payload. */
const HEADER_ROOM = 8 * 1024;
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** How long the pieces of a chunked reply wait for their caller. */
const CONTINUATION_TTL_MS = 30_000;

const encoder = new TextEncoder();

/**
 * A message's headers, or undefined when there are none or they cannot be parsed: nats.js
 * decodes headers lazily and throws on a malformed line, and no message may stop a service.
 */
export function safeHeaders(msg: { headers?: MsgHdrs }): { headers: MsgHdrs | undefined; malformed: boolean } {
  try {
    return { headers: msg.headers, malformed: false };
  } catch {
    return { headers: undefined, malformed: true };
  }
}

export function header(msg: { headers?: MsgHdrs }, name: string): string | undefined {
  return safeHeaders(msg).headers?.get(name) || undefined;
}

/** The largest payload this connection's server accepts (its INFO), less room for headers. */
export function payloadBudget(nc: NatsConnection): number {
  return (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - HEADER_ROOM;
}

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value ?? null));
}

/**
 * A handler's answer that is JSON text already (a page PostgreSQL rendered, say): the transport
 * sends it as it is instead of encoding an object. The handler vouches that it is valid JSON of
 * the contract's response; callers that check (`RpcClient.call`) still parse and check it.
 */
export class JsonText {
  constructor(readonly text: string) {}
}

/** A handler's answer as the bytes of its reply. */
export function encodeReply(value: unknown): Uint8Array {
  return value instanceof JsonText ? encoder.encode(value.text) : encodeJson(value);
}

/**
 * Answers a request. A reply larger than the server's max payload is cut into chunks: the
 * first goes back at once with `Parley-Chunks: n` and `Parley-Continue: <subject>`, where
 * the caller asks for chunks 1 … n−1 by index. So no answer is ever lost to the payload limit.
 */
export function respond(nats: Nats, msg: Msg, body: Uint8Array, headers?: MsgHdrs): void {
  const nc = nats.connection;
  const budget = payloadBudget(nc);
  if (body.length <= budget) {
    msg.respond(body, headers ? { headers } : undefined);
    return;
  }
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += budget) chunks.push(body.subarray(at, at + budget));
  const inbox = createInbox(nats.inboxPrefix);
  const sub = nc.subscribe(inbox, {
    max: chunks.length - 1,
    callback: (err, ask) => {
      if (err) return;
      const index = Number(ask.string());
      if (Number.isInteger(index) && index > 0 && index < chunks.length) ask.respond(chunks[index]);
    },
  });
  setTimeout(() => sub.unsubscribe(), CONTINUATION_TTL_MS).unref();
  const h = headers ?? natsHeaders();
  h.set(Headers.chunks, String(chunks.length));
  h.set(Headers.continuation, inbox);
  msg.respond(chunks[0], { headers: h });
}

/** The whole payload of a reply, fetching the remaining chunks of a chunked one. */
export async function replyPayload(nc: NatsConnection, reply: Msg, timeoutMs: number): Promise<Uint8Array> {
  const { headers } = safeHeaders(reply);
  const count = Number(headers?.get(Headers.chunks) || 1);
  const continuation = headers?.get(Headers.continuation);
  if (count <= 1 || !continuation) return reply.data;
  const parts = [reply.data];
  for (let i = 1; i < count; i++) {
    const next = await nc.request(continuation, String(i), { timeout: timeoutMs });
    parts.push(next.data);
  }
  const whole = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    whole.set(part, at);
    at += part.length;
  }
  return whole;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Whether JSON text opens more than `limit` arrays or objects inside one another (one pass, no parse). */
export function nestsDeeperThan(data: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > limit) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}

/** Parses a JSON payload; an empty one is `{}`. Anything else that is not JSON, or nests too deeply, is a 400. */
export function decodeJson(data: Uint8Array): unknown {
  if (data.length === 0) return {};
  if (nestsDeeperThan(data, MAX_WIRE_JSON_DEPTH)) {
    throw new ParleyError('BAD_REQUEST', `payload nests deeper than ${MAX_WIRE_JSON_DEPTH} levels`);
  }
  try {
    return parseJsonBytes(data);
  } catch {
    throw new ParleyError('BAD_REQUEST', 'payload is not JSON (UTF-8)');
  }
}

/** JSON.parse of UTF-8 bytes; throws on invalid UTF-8 or JSON. The caller has bounded the nesting. */
export function parseJsonBytes(data: Uint8Array): unknown {
  return JSON.parse(decoder.decode(data)) as unknown;
}

/**
 * Subscribes to a live (core NATS, may-be-missed) subject: each message that parses and fits
 * the schema goes to `onMessage`; anything else is dropped and counted, never thrown.
 */
export function subscribeLive<S extends z.ZodType>(
  nats: Nats,
  subject: string,
  schema: S,
  metrics: Metrics,
  onMessage: (value: z.output<S>) => void,
): Subscription {
  return nats.connection.subscribe(nats.subject(subject), {
    callback: (err, msg) => {
      if (err) return;
      let value: unknown;
      try {
        value = decodeJson(msg.data);
      } catch {
        metrics.liveDropped.inc({ reason: 'not_json' });
        return;
      }
      const parsed = schema.safeParse(value);
      if (!parsed.success) {
        metrics.liveDropped.inc({ reason: 'invalid' });
        return;
      }
      try {
        onMessage(parsed.data);
      } catch {
        metrics.liveDropped.inc({ reason: 'handler_failed' });
      }
    },
  });
}

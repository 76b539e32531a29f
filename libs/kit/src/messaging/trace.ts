import {
  SpanStatusCode,
  context,
  propagation,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

const setter: TextMapSetter<MsgHdrs> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

const getter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => (carrier ? carrier.keys() : []),
  get: (carrier, key) => (carrier?.has(key) ? carrier.get(key) : undefined),
};

/** NATS headers carrying W3C trace context (traceparent, tracestate) of the active span. */
export function traceHeaders(base?: MsgHdrs, ctx: Context = context.active()): MsgHdrs {
  const h = base ?? natsHeaders();
  propagation.inject(ctx, h, setter);
  return h;
}

/** The trace context a publisher or requester put in a message's headers. */
export function contextFromHeaders(h: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), h, getter);
}

/** Trace context as a plain record, for rows (the outbox) that are published later. */
export function traceCarrier(ctx: Context = context.active()): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** Marks a span as failed with the error it met. */
export function recordError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : new Error(String(error)));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

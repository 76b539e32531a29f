import { randomFillSync } from 'node:crypto';
import {
  ROOT_CONTEXT,
  TraceFlags,
  context,
  isSpanContextValid,
  propagation,
  trace,
  type Context,
  type Span,
  type SpanOptions,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';

const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let used = POOL_BYTES;

/** `bytes` random bytes as hex, from a pool filled a few kilobytes at a time. */
function randomHex(bytes: number): string {
  if (used + bytes > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES));
    used = 0;
  }
  const hex = pool.toString('hex', used, used + bytes);
  used += bytes;
  // All zeros is an invalid id (a chance of 2^-64 or less); draw again.
  return /^0+$/.test(hex) ? randomHex(bytes) : hex;
}

/**
 * Spans that are only ids, for a process that exports none: each continues the trace of its
 * parent context (or starts one), with a span id of its own, and records nothing. The trace
 * and span ids still travel in `traceparent` and reach the logs, at a fraction of the SDK's
 * cost per span (no sampler, no attributes checked, no span object to fill and drop).
 */
export class IdOnlyTracer implements Tracer {
  startSpan(_name: string, options?: SpanOptions, ctx: Context = context.active()): Span {
    const parent = options?.root ? undefined : trace.getSpanContext(ctx);
    const continued = parent !== undefined && isSpanContextValid(parent);
    return trace.wrapSpanContext({
      traceId: continued ? parent.traceId : randomHex(16),
      spanId: randomHex(8),
      traceFlags: continued ? parent.traceFlags : TraceFlags.NONE,
      ...(continued && parent.traceState ? { traceState: parent.traceState } : {}),
    });
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(name: string, options: SpanOptions, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    ctx: Context,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    ...rest: [F] | [SpanOptions, F] | [SpanOptions, Context, F]
  ): ReturnType<F> {
    const fn = rest[rest.length - 1] as (span: Span) => ReturnType<F>;
    const options = rest.length > 1 ? (rest[0] as SpanOptions) : undefined;
    const parent = rest.length > 2 ? (rest[1] as Context) : context.active();
    const span = this.startSpan(name, options, parent);
    return context.with(trace.setSpan(parent, span), fn, undefined, span);
  }
}

/** The provider of `IdOnlyTracer`: one tracer whatever the name. */
export class IdOnlyTracerProvider implements TracerProvider {
  private readonly tracer = new IdOnlyTracer();

  getTracer(): Tracer {
    return this.tracer;
  }
}

/** Fastify's request headers, as the propagators read them. */
type Headers = Record<string, string | string[] | undefined>;

/**
 * What a request's server span gives when spans are only ids: the rest of the request runs in
 * a context whose span continues the caller's `traceparent`, or starts a trace.
 */
export function withRequestSpan(tracer: Tracer, headers: Headers, next: () => void): void {
  const parent = propagation.extract(ROOT_CONTEXT, headers);
  context.with(trace.setSpan(parent, tracer.startSpan('request', undefined, parent)), next);
}

import { ROOT_CONTEXT, TraceFlags, context, propagation, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { IdOnlyTracer, withRequestSpan } from './id-only-tracer';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const incoming = { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` };

describe('IdOnlyTracer', () => {
  const manager = new AsyncLocalStorageContextManager();
  beforeAll(() => {
    context.setGlobalContextManager(manager.enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  });
  afterAll(() => {
    context.disable();
    propagation.disable();
  });

  const tracer = new IdOnlyTracer();

  it('continues the trace of the parent context with a span id of its own', () => {
    const parent = propagation.extract(ROOT_CONTEXT, incoming);
    const span = tracer.startSpan('child', undefined, parent);
    const ids = span.spanContext();
    expect(ids.traceId).toBe(TRACE);
    expect(ids.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(ids.spanId).not.toBe('00f067aa0ba902b7');
    expect(ids.traceFlags).toBe(TraceFlags.SAMPLED);
    expect(span.isRecording()).toBe(false);
  });

  it('starts a trace without a parent, or when asked for a root', () => {
    const a = tracer.startSpan('a').spanContext();
    const b = tracer.startSpan('b').spanContext();
    expect(a.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(a.traceId).not.toBe(b.traceId);
    expect(a.traceFlags).toBe(TraceFlags.NONE);
    const parent = propagation.extract(ROOT_CONTEXT, incoming);
    expect(tracer.startSpan('root', { root: true }, parent).spanContext().traceId).not.toBe(TRACE);
  });

  it('makes the span active for the function, in every overload, and returns what it returns', async () => {
    const seen: string[] = [];
    const note = (span: Span) => {
      expect(trace.getActiveSpan()?.spanContext().spanId).toBe(span.spanContext().spanId);
      seen.push(span.spanContext().traceId);
      return seen.length;
    };
    expect(tracer.startActiveSpan('one', note)).toBe(1);
    expect(tracer.startActiveSpan('two', {}, note)).toBe(2);
    const parent = propagation.extract(ROOT_CONTEXT, incoming);
    expect(await tracer.startActiveSpan('three', {}, parent, async (span) => note(span))).toBe(3);
    expect(seen[2]).toBe(TRACE);
    expect(trace.getActiveSpan()).toBeUndefined();
  });

  it("runs the rest of a request in a span that continues the caller's traceparent, which goes on", async () => {
    const carried = await new Promise<Record<string, string>>((resolve) =>
      withRequestSpan(tracer, incoming, () => {
        // Later, as a handler's NATS request would.
        setImmediate(() =>
          tracer.startActiveSpan('message.messages.list request', (span) => {
            const carrier: Record<string, string> = {};
            propagation.inject(context.active(), carrier);
            span.end();
            resolve(carrier);
          }),
        );
      }),
    );
    expect(carried.traceparent).toMatch(new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
  });
});

/**
 * Loaded with `node --import @parley/kit/telemetry` before the application, so that
 * instrumentation hooks are in place before Fastify, pg and ioredis are first loaded.
 *
 * Every package of the workspace is CommonJS, so `require` patching is all instrumentation
 * needs. No ESM loader hook is registered: it would run in a loader thread of its own and
 * cost each process about 115 MB resident for modules that never come through it.
 *
 * The tracer provider is assembled here from its parts rather than by `@opentelemetry/sdk-node`:
 * that package loads every exporter it can configure (gRPC and protobuf OTLP, Zipkin,
 * Prometheus), the metrics and logs SDKs and the configuration-file validator whether used or
 * not — about 6 MB of heap in each process. The standard variables it read for traces are read
 * here (`OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`, span limits, `OTEL_PROPAGATORS`,
 * `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SDK_DISABLED`, `OTEL_LOG_LEVEL`); export is OTLP over
 * HTTP (JSON), to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
 * With neither an endpoint nor a sampler, spans are only ids (`startIdsOnly`).
 */
import { subscribe } from 'node:diagnostics_channel';
import { setSourceMapsSupport } from 'node:module';
import { basename } from 'node:path';
import { context, diag, propagation, trace, DiagConsoleLogger, type TextMapPropagator } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
  diagLogLevelFromString,
  getBooleanFromEnv,
  getNumberFromEnv,
  getStringFromEnv,
  getStringListFromEnv,
} from '@opentelemetry/core';
import {
  defaultResource,
  detectResources,
  envDetector,
  hostDetector,
  osDetector,
  processDetector,
  resourceFromAttributes,
  serviceInstanceIdDetector,
} from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  NoopSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type * as Exporter from '@opentelemetry/exporter-trace-otlp-http';
import type { FastifyInstance } from 'fastify';
import { IdOnlyTracerProvider, withRequestSpan } from './id-only-tracer';

// Stack traces name the TypeScript sources of the services and libs. Only theirs: source maps of
// packages under node_modules are not read (`--enable-source-maps` reads and keeps every
// package's, ~5 MB resident per process).
setSourceMapsSupport(true, { nodeModules: false, generatedCode: false });

const serviceName = process.env.OTEL_SERVICE_NAME ?? `parley-${basename(process.cwd())}`;
process.env.OTEL_SERVICE_NAME = serviceName;

const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;

/** `OTEL_TRACES_SAMPLER` (and `_ARG` for the ratio samplers); undefined when unset or unknown. */
function samplerFromEnv(): Sampler | undefined {
  const name = getStringFromEnv('OTEL_TRACES_SAMPLER');
  const ratio = () => {
    const arg = getNumberFromEnv('OTEL_TRACES_SAMPLER_ARG');
    return arg !== undefined && arg >= 0 && arg <= 1 ? arg : 1;
  };
  switch (name) {
    case undefined:
      return undefined;
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      diag.error(`unknown OTEL_TRACES_SAMPLER value "${name}", using the default`);
      return undefined;
  }
}

/** `OTEL_PROPAGATORS`: `tracecontext` and `baggage` (the default), or `none`. */
function propagatorFromEnv(): TextMapPropagator | null {
  const names = getStringListFromEnv('OTEL_PROPAGATORS') ?? ['tracecontext', 'baggage'];
  if (names.includes('none')) return null;
  const propagators: TextMapPropagator[] = [];
  for (const name of new Set(names)) {
    if (name === 'tracecontext') propagators.push(new W3CTraceContextPropagator());
    else if (name === 'baggage') propagators.push(new W3CBaggagePropagator());
    else diag.warn(`OTEL_PROPAGATORS: "${name}" is not supported (tracecontext, baggage, none)`);
  }
  return propagators.length === 0 ? null : new CompositePropagator({ propagators });
}

/** A positive number from the environment, or undefined (the SDK's default). */
const positive = (name: string) => {
  const value = getNumberFromEnv(name);
  return value !== undefined && value > 0 ? value : undefined;
};

function spanProcessor(): SpanProcessor {
  // No endpoint, no export: spans are not recorded, yet every request still gets a trace id
  // that travels over NATS and into the logs. The exporter is loaded only when it is used.
  if (!endpoint) return new NoopSpanProcessor();
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only with an endpoint
  const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof Exporter;
  return new BatchSpanProcessor({
    exporter: new OTLPTraceExporter(),
    maxQueueSize: positive('OTEL_BSP_MAX_QUEUE_SIZE'),
    scheduledDelayMillis: positive('OTEL_BSP_SCHEDULE_DELAY'),
    exportTimeoutMillis: positive('OTEL_BSP_EXPORT_TIMEOUT'),
    maxExportBatchSize: positive('OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
  });
}

let provider: TracerProvider | undefined;

/**
 * No endpoint and no sampler asked for: no span is ever recorded, so spans are only ids
 * (`IdOnlyTracerProvider`) and a request's context comes from one Fastify hook instead of
 * `@fastify/otel`. Trace ids still arrive from `traceparent`, travel over NATS and reach the
 * logs; the SDK's spans, sampled out and dropped, cost the gateway ~10 % of its CPU per request
 * under load (docs/benchmarks.md).
 */
function startIdsOnly(): void {
  const ids = new IdOnlyTracerProvider();
  const tracer = ids.getTracer();
  trace.setGlobalTracerProvider(ids);
  subscribe('fastify.initialization', (message) => {
    const { fastify } = message as { fastify: FastifyInstance };
    fastify.addHook('onRequest', (request, _reply, done) => withRequestSpan(tracer, request.headers, done));
  });
}

function start(): void {
  const logLevel = getStringFromEnv('OTEL_LOG_LEVEL');
  if (logLevel) diag.setLogger(new DiagConsoleLogger(), { logLevel: diagLogLevelFromString(logLevel) });
  if (getBooleanFromEnv('OTEL_SDK_DISABLED')) return;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const propagator = propagatorFromEnv();
  if (propagator) propagation.setGlobalPropagator(propagator);
  if (!endpoint && getStringFromEnv('OTEL_TRACES_SAMPLER') === undefined) {
    startIdsOnly();
    return;
  }

  registerInstrumentations({
    instrumentations: [
      // Spans of SQL and Redis commands only matter when spans are exported; without an
      // endpoint they would be made and dropped on every statement. The request's span and the
      // NATS spans stay: they carry the trace id.
      ...(endpoint ? [new PgInstrumentation({ enhancedDatabaseReporting: false }), new IORedisInstrumentation()] : []),
      // The request's SERVER span (from an incoming traceparent, if any) and the route
      // handler's span; not one span per lifecycle hook. HTTP itself is not instrumented:
      // every HTTP server here is Fastify, and a second SERVER span per request cost about a
      // fifth of the gateway's CPU (docs/benchmarks.md).
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        instrumentHooks: false,
        ignorePaths: (route) => /^\/(healthz|readyz|metrics)\b/.test(route.url),
      }),
    ],
  });

  const resource = defaultResource()
    .merge(
      detectResources({
        detectors: [serviceInstanceIdDetector, processDetector, hostDetector, osDetector, envDetector],
      }),
    )
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }));
  const spanLimit = (...names: string[]) => names.map((n) => getNumberFromEnv(n)).find((v) => v !== undefined);
  provider = new TracerProvider({
    resource,
    // Unset: parent-based always-on with an endpoint, always off without one.
    sampler: samplerFromEnv() ?? (endpoint ? undefined : new AlwaysOffSampler()),
    spanLimits: {
      attributeCountLimit: spanLimit('OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT', 'OTEL_ATTRIBUTE_COUNT_LIMIT'),
      attributeValueLengthLimit: spanLimit(
        'OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT',
        'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT',
      ),
      eventCountLimit: spanLimit('OTEL_SPAN_EVENT_COUNT_LIMIT'),
      linkCountLimit: spanLimit('OTEL_SPAN_LINK_COUNT_LIMIT'),
    },
    spanProcessors: [spanProcessor()],
  });
  trace.setGlobalTracerProvider(provider);
}

start();

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await provider?.shutdown().catch(() => undefined);
}
process.once('beforeExit', () => void shutdown());
export const telemetryShutdown = shutdown;

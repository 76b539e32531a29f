/**
 * The OpenTelemetry SDK's tracing, for a process that records spans (an OTLP endpoint, or a
 * sampler asked for). Loaded by `telemetry.ts` only then: in the default id-only mode the SDK,
 * its resource detectors and the instrumentations stay unloaded (about 1 MB less resident in
 * each process, docs/benchmarks.md).
 */
import { diag, trace } from '@opentelemetry/api';
import { getNumberFromEnv, getStringFromEnv } from '@opentelemetry/core';
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

/** A positive number from the environment, or undefined (the SDK's default). */
const positive = (name: string) => {
  const value = getNumberFromEnv(name);
  return value !== undefined && value > 0 ? value : undefined;
};

function spanProcessor(endpoint: string | undefined): SpanProcessor {
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

/** Registers the instrumentations and the SDK's tracer provider; answers the provider. */
export function startSdkTracing(endpoint: string | undefined, serviceName: string): TracerProvider {
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
  const provider = new TracerProvider({
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
    spanProcessors: [spanProcessor(endpoint)],
  });
  trace.setGlobalTracerProvider(provider);
  return provider;
}

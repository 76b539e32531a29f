/**
 * Loaded with `node --import @parley/kit/telemetry` before the application, so that
 * instrumentation hooks are in place before Fastify, pg and ioredis are first loaded.
 *
 * Every package of the workspace is CommonJS, so `require` patching is all instrumentation
 * needs. No ESM loader hook is registered: it would run in a loader thread of its own and
 * cost each process about 115 MB resident for modules that never come through it.
 *
 * The tracer provider is assembled from its parts (`sdk-tracing.ts`, loaded only when spans are
 * recorded) rather than by `@opentelemetry/sdk-node`:
 * that package loads every exporter it can configure (gRPC and protobuf OTLP, Zipkin,
 * Prometheus), the metrics and logs SDKs and the configuration-file validator whether used or
 * not — about 6 MB of heap in each process. The standard variables it read for traces are read
 * there (`OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*`, span limits, `OTEL_PROPAGATORS`,
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
  getStringFromEnv,
  getStringListFromEnv,
} from '@opentelemetry/core';
import type * as SdkTracing from './sdk-tracing';
import type { FastifyInstance } from 'fastify';
import { IdOnlyTracerProvider, withRequestSpan } from './id-only-tracer';

// Stack traces name the TypeScript sources of the services and libs. Only theirs: source maps of
// packages under node_modules are not read (`--enable-source-maps` reads and keeps every
// package's, ~5 MB resident per process).
setSourceMapsSupport(true, { nodeModules: false, generatedCode: false });

const serviceName = process.env.OTEL_SERVICE_NAME ?? `parley-${basename(process.cwd())}`;
process.env.OTEL_SERVICE_NAME = serviceName;

const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;

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

let provider: { shutdown(): Promise<void> } | undefined;

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

  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the SDK is loaded only when spans are recorded
  const { startSdkTracing } = require('./sdk-tracing') as typeof SdkTracing;
  provider = startSdkTracing(endpoint, serviceName);
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

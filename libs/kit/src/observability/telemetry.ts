/**
 * Loaded with `node --import @parley/kit/telemetry` before the application, so that
 * instrumentation hooks are in place before http, pg and ioredis are first loaded.
 *
 * Every package of the workspace is CommonJS, so `require` patching is all instrumentation
 * needs. No ESM loader hook is registered: it would run in a loader thread of its own and
 * cost each process about 115 MB resident for modules that never come through it.
 */
// First, so that everything below (and the service after it) is read from the compile cache.
import './compile-cache';
import { basename } from 'node:path';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { AlwaysOffSampler, NoopSpanProcessor } from '@opentelemetry/sdk-trace';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { FastifyOtelInstrumentation } from '@fastify/otel';

const serviceName = process.env.OTEL_SERVICE_NAME ?? `parley-${basename(process.cwd())}`;
process.env.OTEL_SERVICE_NAME = serviceName;

const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;

const sdk = new NodeSDK({
  serviceName,
  // No endpoint, no export (the SDK's default would be an OTLP exporter to localhost:4318):
  // spans are not recorded, yet every request still gets a trace id that travels over NATS
  // and into the logs. OTEL_TRACES_SAMPLER, when set, still decides.
  ...(endpoint
    ? { traceExporter: new OTLPTraceExporter() }
    : {
        spanProcessors: [new NoopSpanProcessor()],
        ...(process.env.OTEL_TRACES_SAMPLER ? {} : { sampler: new AlwaysOffSampler() }),
      }),
  // Metrics are Prometheus' (/metrics) and logs are pino's: the SDK exports neither.
  metricReaders: [],
  logRecordProcessors: [],
  instrumentations: [
    new HttpInstrumentation({
      ignoreIncomingRequestHook: (req) => /^\/(healthz|readyz|metrics)\b/.test(req.url ?? ''),
    }),
    new PgInstrumentation({ enhancedDatabaseReporting: false }),
    new IORedisInstrumentation(),
    new FastifyOtelInstrumentation({
      registerOnInitialization: true,
      ignorePaths: (route) => /^\/(healthz|readyz|metrics)\b/.test(route.url),
    }),
  ],
});
sdk.start();

let stopping = false;
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await sdk.shutdown().catch(() => undefined);
}
process.once('beforeExit', () => void shutdown());
export const telemetryShutdown = shutdown;

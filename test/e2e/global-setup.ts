import { randomBytes } from 'node:crypto';
import { startOtlpReceiver } from '../support/otlp-receiver';
import { runId, startStack } from '../support/stack';

/** Starts the five services once for every end-to-end suite, with their own schemas, subjects and ports. */
export default async function globalSetup(): Promise<void> {
  const id = runId('e2e');
  const receiver = await startOtlpReceiver();
  const adminPassword = randomBytes(12).toString('base64url');
  const stack = await startStack(id, {
    PARLEY_ADMIN_USERNAME: 'admin',
    PARLEY_ADMIN_PASSWORD: adminPassword,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '200',
    // Low enough that a test can cross it; every other suite stays far below.
    RATE_LIMIT_PER_MINUTE: '300',
    // Open streams check their caller's rights every second, so a revoked one ends quickly.
    STREAM_RECHECK_SECONDS: '1',
  });
  const gateway = stack.services.get('gateway');
  process.env.E2E_RUN_ID = id;
  process.env.E2E_GATEWAY_URL = `http://127.0.0.1:${gateway?.port}`;
  process.env.E2E_OTLP_URL = receiver.url;
  process.env.E2E_ADMIN_USERNAME = 'admin';
  process.env.E2E_ADMIN_PASSWORD = adminPassword;
  process.env.E2E_NATS_PREFIX = id;
  for (const [name, s] of stack.services) process.env[`E2E_${name.toUpperCase()}_PORT`] = String(s.port);
  Object.assign(globalThis, { __parleyStack: stack, __parleyReceiver: receiver });
}

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const KIT = join(__dirname, '..', '..');

/** The OpenTelemetry packages a process started with `--import @parley/kit/telemetry` has loaded. */
function loadedWith(env: Record<string, string>): string[] {
  const probe = `console.log(JSON.stringify(Object.keys(require.cache).filter((f) => f.includes('@opentelemetry') || f.includes('@fastify/otel')).map((f) => f.replace(/.*node_modules\\//, '').split('/').slice(0, 2).join('/'))))`;
  const run = spawnSync(process.execPath, ['--import', '@parley/kit/telemetry', '-e', probe], {
    cwd: KIT,
    env: { PATH: process.env.PATH ?? '', ...env },
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`probe failed: ${run.stderr}`);
  return [...new Set(JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '[]') as string[])].sort();
}

describe('telemetry', () => {
  it('leaves the SDK and the instrumentations unloaded when no span is recorded', () => {
    const loaded = loadedWith({});
    expect(loaded).toEqual(expect.arrayContaining(['@opentelemetry/api', '@opentelemetry/core']));
    for (const sdk of ['sdk-trace', 'resources', 'instrumentation', 'instrumentation-pg', 'otel']) {
      expect(loaded.filter((p) => p.endsWith(`/${sdk}`))).toEqual([]);
    }
  });

  it('loads them with an endpoint', () => {
    const loaded = loadedWith({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' });
    expect(loaded).toEqual(
      expect.arrayContaining([
        '@opentelemetry/sdk-trace',
        '@opentelemetry/resources',
        '@opentelemetry/instrumentation-pg',
        '@opentelemetry/exporter-trace-otlp-http',
        '@fastify/otel',
      ]),
    );
  });
});

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { startFakeGateway, startOperatorNats, type FakeGateway, type OperatorNats } from './support/operator-nats';

const run = promisify(execFile);
const PKG_DIR = resolve(__dirname, '..');
const TTL_SECONDS = 3;

/** npm run from here would otherwise pick up pnpm's npm_config_* settings. */
const npmEnv = () => Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_config_/i.test(key)));

/** A bot's program outside the workspace: reports for `RUN_MS`, then prints what happened as JSON. */
const BOT_SCRIPT = `
const { UsageClient } = require('@parley/usage-client');
(async () => {
  const keys = new Set();
  const errors = [];
  const client = await UsageClient.connect(process.env.NATS_URL, {
    botId: process.env.BOT_ID,
    credentials: { gatewayUrl: process.env.GATEWAY_URL, apiKey: process.env.API_KEY, renewAfter: 0.5 },
    publishTimeoutMs: 1000,
    connect: { reconnectTimeWait: 100, reconnectJitter: 0 },
    onError: (e) => errors.push(e.name + ': ' + e.message),
  });
  const pending = [];
  const until = Date.now() + Number(process.env.RUN_MS);
  let n = 0;
  while (Date.now() < until) {
    keys.add(client.credentials.publicKey);
    const now = new Date().toISOString();
    pending.push(client.reportUsage({ request_id: 'p-' + n++, status: 'completed', provider: 'openai',
      model: 'gpt-4o', input_tokens: 3, output_tokens: 2, started_at: now, completed_at: now }));
    await new Promise((r) => setTimeout(r, 100));
  }
  pending.push(client.reportActivity({ event_id: 'a-1', event_type: 'tool.call', occurred_at: new Date().toISOString() }));
  const receipts = await Promise.all(pending);
  keys.add(client.credentials.publicKey);
  await client.close();
  console.log(JSON.stringify({ reports: n, seqs: receipts.map((r) => r.seq), keys: [...keys], errors }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

const TYPES_CHECK = `
import { CredentialsError, UsageClient, type Quota, type UsageReport } from '@parley/usage-client';
export async function check(): Promise<Quota> {
  const client = await UsageClient.connect('nats://127.0.0.1:4222', {
    botId: '00000000-0000-4000-8000-000000000000',
    credentials: { gatewayUrl: 'http://127.0.0.1:3000', apiKey: 'k', ttlSeconds: 600 },
    onError: (e) => (e instanceof CredentialsError ? e.status : 0),
  });
  const report: UsageReport = { request_id: 'r', status: 'started', started_at: new Date().toISOString() };
  await client.reportUsage(report);
  return client.checkQuota();
}
`;

describe('the packed @parley/usage-client, installed outside the workspace', () => {
  let work: string;
  let app: string;
  let nats: OperatorNats;
  let gateway: FakeGateway;
  let service: NatsConnection;
  let jsm: JetStreamManager;
  const bots = new Map<string, string>();

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'usage-client-pack-test-'));
    app = join(work, 'bot');
    nats = await startOperatorNats();
    service = await connect({
      servers: nats.url,
      authenticator: credsAuthenticator(new TextEncoder().encode(nats.serviceCreds)),
    });
    jsm = await jetstreamManager(service);
    await jsm.streams.add({ name: 'USAGE', subjects: ['usage.events.*', 'activity.events.*'] });
    gateway = await startFakeGateway(nats, bots, { ttlSeconds: TTL_SECONDS });
  }, 30_000);

  afterAll(async () => {
    await service?.close();
    await gateway?.close();
    await nats?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs with the contracts inside, installs with npm, type-checks, and reports across a renewal', async () => {
    // Pack into a folder of the test's own.
    const out = join(work, 'out');
    const packed = await run(process.execPath, [join(PKG_DIR, 'scripts', 'pack.mjs'), '--out', out], {
      cwd: PKG_DIR,
      env: npmEnv(),
    });
    const tarballs = readdirSync(out);
    expect(tarballs).toEqual([expect.stringMatching(/^parley-usage-client-\d+\.\d+\.\d+\.tgz$/)]);
    const tarball = join(out, tarballs[0]);
    expect(packed.stdout.trim()).toBe(tarball);

    // Install it in an empty project: npm fetches only its public dependencies.
    const { mkdirSync } = await import('node:fs');
    mkdirSync(app);
    await run('npm', ['init', '-y'], { cwd: app, env: npmEnv() });
    await run('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, env: npmEnv() });
    const installed = readdirSync(join(app, 'node_modules', '@parley'));
    expect(installed).toEqual(['usage-client']);

    // CommonJS and ESM consumers load it; its declarations stand on their own.
    await run(process.execPath, ['-e', "require('@parley/usage-client').UsageClient.connect"], { cwd: app });
    await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { UsageClient } from '@parley/usage-client'; if (!UsageClient) process.exit(1);",
      ],
      { cwd: app },
    );
    writeFileSync(join(app, 'check.ts'), TYPES_CHECK);
    const root = resolve(PKG_DIR, '../..');
    await run(
      process.execPath,
      [
        join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
        '--noEmit',
        '--strict',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        '--target',
        'es2022',
        '--skipLibCheck',
        'false',
        '--typeRoots',
        join(root, 'node_modules', '@types'),
        '--types',
        'node',
        'check.ts',
      ],
      { cwd: app },
    ).catch((error: { stdout?: string }) => {
      throw new Error(`the installed package does not type-check:\n${error.stdout}`);
    });

    // A bot program using the installed package against operator-mode NATS and the credentials route.
    const botId = randomUUID();
    bots.set(botId, `pk_${randomUUID()}`);
    writeFileSync(join(app, 'bot.cjs'), BOT_SCRIPT);
    const { stdout } = await run(process.execPath, ['bot.cjs'], {
      cwd: app,
      env: {
        PATH: process.env.PATH,
        NATS_URL: nats.url,
        GATEWAY_URL: gateway.url,
        API_KEY: bots.get(botId),
        BOT_ID: botId,
        RUN_MS: String(TTL_SECONDS * 1000 + 1500),
      },
      timeout: 30_000,
    });
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      reports: number;
      seqs: number[];
      keys: string[];
      errors: string[];
    };
    expect(result.reports).toBeGreaterThanOrEqual(30);
    expect(new Set(result.seqs).size).toBe(result.reports + 1);
    // It renewed its credentials past the first expiry and reported with the new ones.
    expect(result.keys.length).toBeGreaterThanOrEqual(2);
    expect(gateway.calls.filter((c) => c.botId === botId && c.status === 201).length).toBeGreaterThanOrEqual(3);
    expect(result.errors.filter((e) => !e.startsWith('UserAuthenticationExpiredError'))).toEqual([]);

    const usage = await jsm.streams.info('USAGE', { subjects_filter: `usage.events.${botId}` });
    expect(usage.state.subjects?.[`usage.events.${botId}`]).toBe(result.reports);
    const activity = await jsm.streams.getMessage('USAGE', { last_by_subj: `activity.events.${botId}` });
    expect(activity?.header.get('Nats-Msg-Id')).toBe(`${botId}:a-1`);
    expect(nats.log()).not.toMatch(/Permissions Violation/i);
  }, 120_000);
});

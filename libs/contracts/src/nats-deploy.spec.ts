import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  connect,
  credsAuthenticator,
  PermissionViolationError,
  usernamePasswordAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { encodeUser, fmtCreds } from '@nats-io/jwt';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { BOT_MAX_PAYLOAD, NATS_SERVICES, botPermissions, servicePermissions } from './permissions';

/**
 * deploy/nats/init against a real nats-server: the credentials it generates, and bot
 * credentials signed like the access service signs them, allow exactly what libs/contracts
 * says. nats-server must be installed (NATS_SERVER_BIN, or on PATH): without it this fails.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const INIT = join(ROOT, 'deploy', 'nats', 'init.mjs');
const NATS_SERVER = process.env.NATS_SERVER_BIN ?? 'nats-server';
const PREFIX = 'natsdeploy';
const BOT = '0190c2d4-5a6b-7c8d-9e0f-0123456789ab';
const OTHER_BOT = '0190c2d4-5a6b-7c8d-9e0f-ba9876543210';
const te = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves with 'open' after ms, without keeping the process alive. */
const stillOpenAfter = (ms: number) => new Promise<'open'>((r) => setTimeout(() => r('open'), ms).unref());

function runInit(args: string[]) {
  const result = spawnSync(process.execPath, [INIT, ...args], { cwd: ROOT, encoding: 'utf8' });
  if (result.error) throw result.error;
  return result;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Starts nats-server and resolves once it is ready; rejects with its output if it is not. */
async function startServer(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<ChildProcess> {
  const child = spawn(NATS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  await new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`nats-server was not ready in 10 s:\n${output}`)), 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Server is ready')) {
        clearTimeout(timer);
        resolveReady();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        error.code === 'ENOENT'
          ? new Error(
              `${NATS_SERVER} was not found: install nats-server (2.9+) or set NATS_SERVER_BIN; npm test needs it`,
            )
          : error,
      );
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (${code}):\n${output}`));
    });
  });
  child.removeAllListeners('exit');
  return child;
}

function stopServer(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

/** A connection that records the asynchronous errors the server sends (permission violations). */
interface Client {
  nc: NatsConnection;
  errors: Error[];
}

async function client(port: number, options: Partial<ConnectionOptions>): Promise<Client> {
  const nc = await connect({ servers: `127.0.0.1:${port}`, reconnect: false, ...options });
  const errors: Error[] = [];
  void (async () => {
    for await (const status of nc.status()) if (status.type === 'error') errors.push(status.error);
  })();
  return { nc, errors };
}

const asCreds = (dir: string, service: string) =>
  credsAuthenticator(readFileSync(join(dir, 'creds', `${service}.creds`)));

const violations = (c: Client, operation: 'publish' | 'subscription') =>
  c.errors
    .filter((e): e is PermissionViolationError => e instanceof PermissionViolationError)
    .filter((e) => e.operation === operation)
    .map((e) => e.subject);

/** Publishes and waits for the server's answer: a violation arrives before the flush's PONG. */
async function tryPublish(c: Client, subject: string, data = 'x'): Promise<boolean> {
  const before = violations(c, 'publish').length;
  c.nc.publish(subject, data);
  await c.nc.flush();
  await sleep(20);
  return !violations(c, 'publish').slice(before).includes(subject);
}

/** Subscribes and reports whether the server let the subscription stand. */
async function trySubscribe(c: Client, subject: string): Promise<boolean> {
  const sub = c.nc.subscribe(subject);
  await c.nc.flush();
  const closed = await Promise.race([sub.closed, stillOpenAfter(100)]);
  if (closed === 'open') {
    sub.unsubscribe();
    return true;
  }
  expect(closed).toBeInstanceOf(PermissionViolationError);
  expect(violations(c, 'subscription')).toContain(subject);
  return false;
}

/** Bot credentials signed the way the access service signs them: by the account signing key. */
async function botCreds(dir: string, botId: string, expiresInSeconds: number): Promise<Uint8Array> {
  const env = Object.fromEntries(
    readFileSync(join(dir, 'account.env'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const signer = fromSeed(te.encode(env.NATS_ACCOUNT_SIGNING_SEED));
  const user = createUser();
  const p = botPermissions(botId, PREFIX);
  const jwt = await encodeUser(
    `bot-${botId}`,
    user,
    env.NATS_ACCOUNT_PUBLIC_KEY,
    { pub: { allow: p.publish }, sub: { allow: p.subscribe }, payload: BOT_MAX_PAYLOAD },
    { signer, exp: Math.ceil(Date.now() / 1000) + expiresInSeconds },
  );
  return fmtCreds(jwt, user);
}

describe('deploy/nats permission files', () => {
  it('the built contracts match the sources the files are generated from', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const dist = require('../dist/permissions') as typeof import('./permissions');
    for (const service of NATS_SERVICES) {
      expect({ service, permissions: dist.servicePermissions(service, '') }).toEqual({
        service,
        permissions: servicePermissions(service, ''),
      });
    }
    expect(dist.botPermissions('b', '')).toEqual(botPermissions('b', ''));
  });

  it('deploy/nats/permissions.json and accounts.conf are what the generator makes now', () => {
    const result = runInit(['--permissions', '--check']);
    if (result.status !== 0) throw new Error(result.stderr);
  });
});

describe('deploy/nats/init in operator mode, on a real nats-server', () => {
  let dir: string;
  let port: number;
  let server: ChildProcess | undefined;
  const clients: Client[] = [];
  const open = async (options: Partial<ConnectionOptions>) => {
    const c = await client(port, options);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-nats-init-'));
    port = await freePort();
    const result = runInit([
      '--out',
      join(dir, 'out'),
      '--prefix',
      PREFIX,
      '--listen',
      `127.0.0.1:${port}`,
      '--store-dir',
      join(dir, 'js'),
    ]);
    if (result.status !== 0) throw new Error(`deploy/nats/init failed:\n${result.stderr}`);
    server = await startServer(['-c', join(dir, 'out', 'nats.conf')]);
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.nc.close().catch(() => undefined)));
    await stopServer(server);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes nats.conf, account.env and one creds file per service, secrets readable by their owner only', () => {
    const out = join(dir, 'out');
    for (const file of ['nats.conf', 'account.env', ...NATS_SERVICES.map((s) => `creds/${s}.creds`)]) {
      expect(existsSync(join(out, file))).toBe(true);
    }
    for (const secret of ['account.env', 'creds/gateway.creds', 'keys/account-signing.nk']) {
      expect(statSync(join(out, secret)).mode & 0o077).toBe(0);
    }
    const conf = readFileSync(join(out, 'nats.conf'), 'utf8');
    expect(conf).toMatch(/^resolver: MEMORY$/m);
    expect(conf).toMatch(/^system_account: A[A-Z0-9]{55}$/m);
    // Unasked, no sync_interval: a 2.9 server (this one) refuses the field.
    expect(conf).not.toContain('sync_interval');
    expect(readFileSync(join(out, 'account.env'), 'utf8')).toMatch(
      /^NATS_ACCOUNT_PUBLIC_KEY=A[A-Z0-9]{55}\nNATS_ACCOUNT_SIGNING_SEED=SA[A-Z0-9]{56}\n$/,
    );
  });

  it('keeps its keys and files on a second run, and makes new ones with --force', () => {
    const out = join(dir, 'out');
    const files = ['nats.conf', 'account.env', 'creds/gateway.creds', 'creds/usage.creds'];
    const before = files.map((f) => readFileSync(join(out, f), 'utf8'));
    const args = ['--out', out, '--prefix', PREFIX, '--listen', `127.0.0.1:${port}`, '--store-dir', join(dir, 'js')];
    expect(runInit(args).status).toBe(0);
    expect(files.map((f) => readFileSync(join(out, f), 'utf8'))).toEqual(before);

    const forced = join(dir, 'forced');
    expect(runInit(['--out', forced]).status).toBe(0);
    const firstKey = readFileSync(join(forced, 'account.env'), 'utf8');
    expect(runInit(['--out', forced, '--force']).status).toBe(0);
    expect(readFileSync(join(forced, 'account.env'), 'utf8')).not.toEqual(firstKey);
  });

  it('writes the sync_interval it is given into the jetstream block, and refuses a bad one', () => {
    const out = join(dir, 'synced');
    expect(runInit(['--out', out, '--sync-interval', 'always']).status).toBe(0);
    expect(readFileSync(join(out, 'nats.conf'), 'utf8')).toMatch(
      /^jetstream \{\n {2}store_dir: .*\n {2}sync_interval: always\n\}$/m,
    );
    const refused = runInit(['--out', out, '--sync-interval', 'sometimes']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('--sync-interval is always or a duration');
  });

  it('refuses a connection without credentials', async () => {
    await expect(connect({ servers: `127.0.0.1:${port}`, reconnect: false })).rejects.toThrow(/authorization/i);
  });

  it('lets the gateway call the access service and read only its own inbox', async () => {
    const gateway = await open({ authenticator: asCreds(join(dir, 'out'), 'gateway'), inboxPrefix: '_INBOX_gateway' });
    const access = await open({ authenticator: asCreds(join(dir, 'out'), 'access'), inboxPrefix: '_INBOX_access' });
    access.nc.subscribe(`${PREFIX}.access.auth.login`, { callback: (_err, msg) => void msg.respond('ok') });
    await access.nc.flush();

    const reply = await gateway.nc.request(`${PREFIX}.access.auth.login`, '{}', { timeout: 2000 });
    expect(reply.string()).toBe('ok');

    expect(await trySubscribe(gateway, '_INBOX_gateway.>')).toBe(true);
    expect(await trySubscribe(gateway, '_INBOX.>')).toBe(false);
    expect(await trySubscribe(gateway, '>')).toBe(false);
    expect(await trySubscribe(gateway, '_INBOX_access.>')).toBe(false);
    expect(await trySubscribe(gateway, `${PREFIX}.access.auth.login`)).toBe(false);
    // Without the deployment's prefix a subject is someone else's.
    expect(await tryPublish(gateway, 'access.auth.login')).toBe(false);
  });

  it('lets a service use JetStream: streams, publish acks, durable consumers, acks', async () => {
    const session = await open({ authenticator: asCreds(join(dir, 'out'), 'session'), inboxPrefix: '_INBOX_session' });
    const jsm = await jetstreamManager(session.nc);
    const stream = `${PREFIX}_DOMAIN_CHECK`;
    await jsm.streams.add({ name: stream, subjects: [`${PREFIX}.evt.>`] });
    const ack = await jetstream(session.nc).publish(`${PREFIX}.evt.session.created`, '{}', { msgID: 'check-1' });
    expect(ack.seq).toBe(1);
    await jsm.consumers.add(stream, { durable_name: 'check', ack_policy: AckPolicy.Explicit });
    const consumer = await jetstream(session.nc).consumers.get(stream, 'check');
    const msg = await consumer.next({ expires: 2000 });
    expect(msg?.subject).toBe(`${PREFIX}.evt.session.created`);
    expect(await msg?.ackAck()).toBe(true);
  });

  it('lets a bot publish its own events and ask for its quota, and nothing else', async () => {
    const usage = await open({ authenticator: asCreds(join(dir, 'out'), 'usage'), inboxPrefix: '_INBOX_usage' });
    const jsm = await jetstreamManager(usage.nc);
    const stream = `${PREFIX}_USAGE_BOT`;
    await jsm.streams.add({ name: stream, subjects: [`${PREFIX}.usage.events.>`, `${PREFIX}.activity.events.>`] });
    usage.nc.subscribe(`${PREFIX}.usage.quota.check`, {
      callback: (_err, msg) => void msg.respond('{"exceeded":false}'),
    });
    await usage.nc.flush();

    const bot = await open({
      authenticator: credsAuthenticator(await botCreds(join(dir, 'out'), BOT, 60)),
      inboxPrefix: `_INBOX_${BOT}`,
    });
    expect(await tryPublish(bot, `${PREFIX}.usage.events.${BOT}`, '{}')).toBe(true);
    expect(await tryPublish(bot, `${PREFIX}.activity.events.${BOT}`, '{}')).toBe(true);
    // Through JetStream: the publish ack comes back on the bot's own inbox; the same id is stored once.
    const msgID = `${BOT}:r-1:completed`;
    const ack = await jetstream(bot.nc).publish(`${PREFIX}.usage.events.${BOT}`, '{}', { msgID });
    expect({ stream: ack.stream, duplicate: ack.duplicate }).toEqual({ stream, duplicate: false });
    expect((await jetstream(bot.nc).publish(`${PREFIX}.usage.events.${BOT}`, '{}', { msgID })).duplicate).toBe(true);
    expect((await jsm.streams.info(stream)).state.messages).toBe(3);

    const quota = await bot.nc.request(`${PREFIX}.usage.quota.check`, `{"bot_id":"${BOT}"}`, { timeout: 2000 });
    expect(quota.string()).toBe('{"exceeded":false}');

    expect(await tryPublish(bot, `${PREFIX}.usage.events.${OTHER_BOT}`, '{}')).toBe(false);
    expect(await tryPublish(bot, `${PREFIX}.activity.events.${OTHER_BOT}`, '{}')).toBe(false);
    expect(await tryPublish(bot, `${PREFIX}.access.auth.login`)).toBe(false);
    expect(await tryPublish(bot, `${PREFIX}.access.bots.nats_credentials`)).toBe(false);
    expect(await tryPublish(bot, '$JS.API.STREAM.LIST')).toBe(false);
    expect((await jsm.streams.info(stream)).state.messages).toBe(3);

    expect(await trySubscribe(bot, `_INBOX_${BOT}.>`)).toBe(true);
    expect(await trySubscribe(bot, '_INBOX.>')).toBe(false);
    expect(await trySubscribe(bot, `_INBOX_${OTHER_BOT}.>`)).toBe(false);
    expect(await trySubscribe(bot, '_INBOX_usage.>')).toBe(false);
    expect(await trySubscribe(bot, `${PREFIX}.usage.events.>`)).toBe(false);
  });

  it('holds a bot to its payload limit', async () => {
    const bot = await open({
      authenticator: credsAuthenticator(await botCreds(join(dir, 'out'), BOT, 60)),
      inboxPrefix: `_INBOX_${BOT}`,
    });
    // The server tells the bot its own limit, and the client holds it there.
    expect(bot.nc.info?.max_payload).toBe(BOT_MAX_PAYLOAD);
    expect(() => bot.nc.publish(`${PREFIX}.usage.events.${BOT}`, new Uint8Array(BOT_MAX_PAYLOAD + 1))).toThrow(
      /max_payload/,
    );
    expect(await tryPublish(bot, `${PREFIX}.usage.events.${BOT}`, 'x'.repeat(BOT_MAX_PAYLOAD - 1024))).toBe(true);
  });

  it('refuses a bot whose credentials have expired', async () => {
    const creds = await botCreds(join(dir, 'out'), BOT, 2);
    const bot = await client(port, { authenticator: credsAuthenticator(creds), inboxPrefix: `_INBOX_${BOT}` });
    expect(await tryPublish(bot, `${PREFIX}.usage.events.${BOT}`, '{}')).toBe(true);
    const closed = await Promise.race([bot.nc.closed(), stillOpenAfter(4000)]);
    expect(String(closed)).toMatch(/expired/i);
    // The server compares whole seconds at connect: within the second of `exp` it still lets one in.
    await sleep(1100);
    await expect(
      connect({ servers: `127.0.0.1:${port}`, reconnect: false, authenticator: credsAuthenticator(creds) }),
    ).rejects.toThrow(/expired|authorization/i);
  });
});

describe('deploy/nats/accounts.conf (static users), on a real nats-server', () => {
  let port: number;
  let server: ChildProcess | undefined;

  beforeAll(async () => {
    port = await freePort();
    const passwords = Object.fromEntries(NATS_SERVICES.map((s) => [`NATS_${s.toUpperCase()}_PASSWORD`, `pw-${s}`]));
    server = await startServer(
      ['-c', join(ROOT, 'deploy', 'nats', 'accounts.conf'), '-a', '127.0.0.1', '-p', String(port)],
      { ...process.env, ...passwords },
    );
  });

  afterAll(async () => {
    await stopServer(server);
  });

  it('gives each service its password and its generated permissions', async () => {
    const gateway = await client(port, {
      authenticator: usernamePasswordAuthenticator('gateway', 'pw-gateway'),
      inboxPrefix: '_INBOX_gateway',
    });
    try {
      expect(await tryPublish(gateway, 'access.auth.login')).toBe(true);
      expect(await trySubscribe(gateway, '_INBOX_gateway.>')).toBe(true);
      expect(await trySubscribe(gateway, '_INBOX.>')).toBe(false);
      expect(await tryPublish(gateway, 'nothing.of.ours')).toBe(false);
    } finally {
      await gateway.nc.close();
    }
    await expect(
      connect({
        servers: `127.0.0.1:${port}`,
        reconnect: false,
        authenticator: usernamePasswordAuthenticator('gateway', 'wrong'),
      }),
    ).rejects.toThrow(/authorization/i);
  });
});

describe('docker-compose.yml and deploy/k8s wire the generated credentials', () => {
  const services = NATS_SERVICES as readonly string[];

  it('compose: nats-init writes the config volume, NATS runs from it, each service has its creds', () => {
    interface ComposeService {
      command?: string[] | string;
      environment?: Record<string, string>;
      volumes?: string[];
      ports?: string[];
      depends_on?: Record<string, { condition: string }>;
    }
    const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, ComposeService>;
    };
    const { 'nats-init': init, nats } = compose.services;
    expect(init.command).toEqual(expect.arrayContaining(['--out', '/nats-config']));
    expect(init.volumes).toContain('nats-config:/nats-config');
    expect(nats.command).toEqual(expect.arrayContaining(['-c', '/nats-config/nats.conf']));
    expect(nats.depends_on?.['nats-init']).toEqual({ condition: 'service_completed_successfully' });
    for (const service of services) {
      const spec = compose.services[service];
      expect({ service, creds: spec.environment?.NATS_CREDS }).toEqual({
        service,
        creds: `/nats-config/creds/${service}.creds`,
      });
      expect(spec.volumes).toContain('nats-config:/nats-config:ro');
    }
    expect(String(compose.services.access.command)).toContain('. /nats-config/account.env');
    for (const name of ['postgres', 'redis', 'nats']) {
      for (const port of compose.services[name].ports ?? []) expect(port).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it('k8s: NATS runs from the parley-nats-server Secret, each service mounts only its creds', () => {
    const docs = (file: string) =>
      parseAllDocuments(readFileSync(join(ROOT, 'deploy', 'k8s', file), 'utf8')).map((d) => d.toJSON());
    const natsSet = docs('nats.yaml').find((d) => d.kind === 'StatefulSet');
    expect(natsSet.spec.template.spec.volumes).toContainEqual(
      expect.objectContaining({ secret: expect.objectContaining({ secretName: 'parley-nats-server' }) }),
    );
    for (const service of services) {
      const deployment = docs(`${service}.yaml`).find((d) => d.kind === 'Deployment');
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0];
      expect(container.env).toContainEqual({ name: 'NATS_CREDS', value: `/etc/parley/nats/${service}.creds` });
      const volume = pod.volumes.find((v: any) => v.secret?.secretName === 'parley-nats-creds');
      expect(volume.secret.items).toEqual([{ key: `${service}.creds`, path: `${service}.creds` }]);
      const account = container.envFrom.some((e: any) => e.secretRef?.name === 'parley-nats-account');
      expect({ service, account }).toEqual({ service, account: service === 'access' });
    }
    const kubectl = spawnSync('kubectl', ['kustomize', join(ROOT, 'deploy', 'k8s')], { encoding: 'utf8' });
    if (!kubectl.error) expect(kubectl.stderr).toBe('');
  });

  it('runs JetStream with sync_interval: always, only on nats-server images that know it (2.10+)', () => {
    const atLeast210 = (image: string) => {
      const [major, minor] = (/^nats:(\d+)\.(\d+)/.exec(image) ?? []).slice(1).map(Number);
      return major > 2 || (major === 2 && minor >= 10);
    };
    const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, { image?: string; command?: string[] }>;
    };
    const initArgs = compose.services['nats-init'].command ?? [];
    expect(initArgs.slice(initArgs.indexOf('--sync-interval'), initArgs.indexOf('--sync-interval') + 2)).toEqual([
      '--sync-interval',
      'always',
    ]);
    expect({ image: compose.services.nats.image, ok: atLeast210(String(compose.services.nats.image)) }).toMatchObject({
      ok: true,
    });
    const natsSet = parseAllDocuments(readFileSync(join(ROOT, 'deploy', 'k8s', 'nats.yaml'), 'utf8'))
      .map((d) => d.toJSON())
      .find((d) => d.kind === 'StatefulSet');
    expect(atLeast210(natsSet.spec.template.spec.containers[0].image)).toBe(true);
    expect(readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8')).toContain('--sync-interval always');
    expect(readFileSync(join(ROOT, 'deploy', 'nats', 'nats-cluster.conf'), 'utf8')).toMatch(
      /^ {2}sync_interval: always$/m,
    );
  });
});

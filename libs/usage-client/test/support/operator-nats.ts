import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createAccount,
  createOperator,
  createUser,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  type KeyPair,
} from '@nats-io/jwt';
import { BOT_MAX_PAYLOAD, botInboxPrefix, botPermissions } from '@parley/contracts';

/**
 * A nats-server of its own in operator mode (JWT accounts, a memory resolver, JetStream), as a
 * deployment runs it when bots get NATS credentials: an operator, a system account, and one
 * account PARLEY whose users are signed by its signing key.
 */
export interface OperatorNats {
  url: string;
  monitorUrl: string;
  /** Public key of the account PARLEY. */
  account: string;
  /** A user of PARLEY without permission limits (for setting up streams and reading them). */
  serviceCreds: string;
  /** A bot user's credentials file, as the gateway mints it. */
  mintBotCreds(botId: string, ttlSeconds: number, prefix?: string): Promise<MintedCreds>;
  /** What the server logged (its log file). */
  log(): string;
  stop(): Promise<void>;
}

export interface MintedCreds {
  creds: string;
  publicKey: string;
  /** Seconds since the epoch, as in the JWT. */
  exp: number;
}

const NATS_SERVER = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export async function startOperatorNats(): Promise<OperatorNats> {
  const dir = mkdtempSync(join(tmpdir(), 'usage-client-nats-'));
  const operator = createOperator();
  const sys = createAccount();
  const parley = createAccount();
  const signer = createAccount();

  const operatorJwt = await encodeOperator('parley-test', operator, { system_account: sys.getPublicKey() });
  const sysJwt = await encodeAccount('SYS', sys, {}, { signer: operator });
  const parleyJwt = await encodeAccount(
    'PARLEY',
    parley,
    {
      signing_keys: [signer.getPublicKey()],
      limits: {
        subs: -1,
        conn: -1,
        leaf: -1,
        imports: -1,
        exports: -1,
        data: -1,
        payload: -1,
        wildcards: true,
        mem_storage: -1,
        disk_storage: -1,
        streams: -1,
        consumer: -1,
      },
    },
    { signer: operator },
  );
  const service = createUser();
  const serviceJwt = await encodeUser('service', service, parley.getPublicKey(), {}, { signer });

  writeFileSync(
    join(dir, 'nats.conf'),
    [
      'host: 127.0.0.1',
      'port: -1',
      'http: "127.0.0.1:-1"',
      `operator: ${operatorJwt}`,
      `system_account: ${sys.getPublicKey()}`,
      'resolver: MEMORY',
      'resolver_preload: {',
      `  ${sys.getPublicKey()}: ${sysJwt}`,
      `  ${parley.getPublicKey()}: ${parleyJwt}`,
      '}',
      `jetstream: { store_dir: "${join(dir, 'js')}", max_memory_store: 64MB, max_file_store: 256MB }`,
      '',
    ].join('\n'),
  );
  const logFile = join(dir, 'nats.log');
  const child = spawn(NATS_SERVER, ['-c', join(dir, 'nats.conf'), '--ports_file_dir', dir, '-l', logFile], {
    stdio: 'ignore',
  });
  const { nats, monitoring } = await waitForPorts(child, dir, logFile);

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };

  return {
    url: nats,
    monitorUrl: monitoring,
    account: parley.getPublicKey(),
    serviceCreds: new TextDecoder().decode(fmtCreds(serviceJwt, service)),
    async mintBotCreds(botId, ttlSeconds, prefix = '') {
      return mintBot(parley.getPublicKey(), signer, botId, ttlSeconds, prefix);
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    stop,
  };
}

/** A bot user as the gateway mints it: the bot's permissions, 64 KiB payloads, a short life. */
async function mintBot(
  account: string,
  signer: KeyPair,
  botId: string,
  ttlSeconds: number,
  prefix: string,
): Promise<MintedCreds> {
  const user = createUser();
  const permissions = botPermissions(botId, prefix);
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  const jwt = await encodeUser(
    `bot-${botId}`,
    user,
    account,
    {
      pub: { allow: permissions.publish, deny: [] },
      sub: { allow: permissions.subscribe, deny: [] },
      payload: BOT_MAX_PAYLOAD,
    },
    { signer, exp },
  );
  return { creds: new TextDecoder().decode(fmtCreds(jwt, user)), publicKey: user.getPublicKey(), exp };
}

async function waitForPorts(
  child: ChildProcess,
  dir: string,
  logFile: string,
): Promise<{ nats: string; monitoring: string }> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      throw new Error(`nats-server exited with ${child.exitCode}: ${log}`);
    }
    const file = readdirSync(dir).find((f) => f.endsWith('.ports'));
    if (file) {
      const ports = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nats: string[]; monitoring: string[] };
      if (ports.nats?.[0] && ports.monitoring?.[0]) return { nats: ports.nats[0], monitoring: ports.monitoring[0] };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error('nats-server did not write its ports file within 10 s');
}

/** Connections the server holds now, with the user each authenticated as (from its monitoring port). */
export async function connectedUsers(monitorUrl: string): Promise<{ name: string; user: string }[]> {
  const res = await fetch(`${monitorUrl}/connz?auth=true`);
  const body = (await res.json()) as { connections?: { name?: string; authorized_user?: string }[] };
  return (body.connections ?? []).map((c) => ({ name: c.name ?? '', user: c.authorized_user ?? '' }));
}

/**
 * Plays the gateway's `POST /api/v1/bots/{id}/nats-credentials` (API.md): checks `X-API-Key`, mints a
 * bot user on the operator-mode server and answers 201 with the contract's fields. `refuse` makes it
 * answer that error instead, `fail` the next few calls with a 503.
 */
export interface FakeGateway {
  url: string;
  /** Every credentials answered, oldest first. */
  issued: MintedCreds[];
  /** Every call, with the status answered. */
  calls: { botId: string; status: number; ttl?: number }[];
  refuse: { status: number; code: string } | undefined;
  failNext: number;
  close(): Promise<void>;
}

export async function startFakeGateway(
  nats: OperatorNats,
  bots: Map<string, string>,
  options: { ttlSeconds: number; prefix?: string },
): Promise<FakeGateway> {
  const gateway: FakeGateway = {
    url: '',
    issued: [],
    calls: [],
    refuse: undefined,
    failNext: 0,
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => send(res, 500, { code: 'INTERNAL', detail: String(error) }));
  });
  const send = (res: ServerResponse, status: number, body: Record<string, unknown>) => {
    const payload =
      status >= 400 ? { status, retryable: status >= 500, detail: 'refused', ...body } : (body as unknown);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const match = /^\/api\/v1\/bots\/([^/]+)\/nats-credentials$/.exec(req.url ?? '');
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    if (req.method !== 'POST' || !match) return send(res, 404, { code: 'NOT_FOUND' });
    const botId = decodeURIComponent(match[1]);
    const body = raw ? (JSON.parse(raw) as { ttl_seconds?: number }) : {};
    const record = (status: number) => gateway.calls.push({ botId, status, ttl: body.ttl_seconds });
    if (bots.get(botId) === undefined || req.headers['x-api-key'] !== bots.get(botId)) {
      record(401);
      return send(res, 401, { code: 'UNAUTHORIZED' });
    }
    if (gateway.refuse) {
      record(gateway.refuse.status);
      return send(res, gateway.refuse.status, { code: gateway.refuse.code });
    }
    if (gateway.failNext > 0) {
      gateway.failNext--;
      record(503);
      return send(res, 503, { code: 'UPSTREAM_UNAVAILABLE' });
    }
    const ttl = Math.min(body.ttl_seconds ?? options.ttlSeconds, options.ttlSeconds);
    const minted = await nats.mintBotCreds(botId, ttl, options.prefix);
    gateway.issued.push(minted);
    record(201);
    const permissions = botPermissions(botId, options.prefix);
    send(res, 201, {
      creds: minted.creds,
      public_key: minted.publicKey,
      expires_at: new Date(minted.exp * 1000).toISOString(),
      publish: permissions.publish,
      subscribe: permissions.subscribe,
      inbox_prefix: botInboxPrefix(botId),
    });
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  gateway.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  gateway.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return gateway;
}

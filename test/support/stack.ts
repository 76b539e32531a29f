import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';

/** The workspace root: the nearest folder up from here or the working directory with pnpm-workspace.yaml. */
function findRoot(start: string): string {
  for (let dir = resolve(start); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'pnpm-workspace.yaml'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no pnpm-workspace.yaml above ${start}`);
  }
}
export const ROOT = findRoot(typeof __dirname === 'string' ? __dirname : process.cwd());
export const SERVICES = ['access', 'session', 'message', 'usage', 'gateway'] as const;
/** Node's flags and the environment every service process starts with, as `npm start` and the image use. */
export const SERVICE_PROCESS = JSON.parse(readFileSync(join(ROOT, 'scripts', 'service-process.json'), 'utf8')) as {
  node: string[];
  env: Record<string, string>;
};
export type ServiceName = (typeof SERVICES)[number];

/** The variable that sets each service's HTTP port. */
export const PORT_VARS: Record<ServiceName, string> = {
  gateway: 'GATEWAY_PORT',
  access: 'ACCESS_HTTP_PORT',
  session: 'SESSION_HTTP_PORT',
  message: 'MESSAGE_HTTP_PORT',
  usage: 'USAGE_HTTP_PORT',
};

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/parley';
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

/** A name for this run: its schemas and NATS subjects carry it, so runs never collide. */
export function runId(kind: string): string {
  return `t${kind}${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export interface RunningService {
  name: ServiceName;
  port: number;
  process: ChildProcess;
  log: string;
  /** Where this process's lines begin in `log` (a restarted service appends to the same file). */
  logStart: number;
}

export interface Stack {
  id: string;
  env: NodeJS.ProcessEnv;
  services: Map<ServiceName, RunningService>;
}

export function startService(name: ServiceName, env: NodeJS.ProcessEnv, logDir: string): RunningService {
  const log = join(logDir, `${name}.log`);
  const logStart = existsSync(log) ? statSync(log).size : 0;
  const out = createWriteStream(log, { flags: 'a' });
  // PARLEY_PROFILE=<service> writes that service's CPU profile under .parley/profiles (benchmarks).
  const extra = (process.env.PARLEY_PROFILE ?? '').split(',').includes(name)
    ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, '.parley', 'profiles')}`]
    : [];
  const child = spawn(process.execPath, [...extra, ...SERVICE_PROCESS.node, 'dist/main.js'], {
    cwd: join(ROOT, 'services', name),
    env: { ...env, ...SERVICE_PROCESS.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return { name, port: Number(env[PORT_VARS[name]]), process: child, log, logStart };
}

/** What this process has written to its log so far. */
function ownLog(service: RunningService): string {
  try {
    return readFileSync(service.log).subarray(service.logStart).toString('utf8');
  } catch {
    return '';
  }
}

/** The inodes of the sockets listening on `port` (any address), from /proc/net/tcp and tcp6. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is `hex ip:hex port`; st 0A is LISTEN; the inode is the tenth field.
      if (fields.length < 10 || fields[3] !== '0A') continue;
      const local = fields[1];
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port) inodes.add(fields[9]);
    }
  }
  return inodes;
}

/** Whether the process itself listens on its port (not some other process that took it). */
function listensItself(service: RunningService): boolean {
  const pid = service.process.pid;
  const inodes = listeningInodes(service.port);
  if (!pid || inodes.size === 0) return false;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const socket = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (socket && inodes.has(socket[1])) return true;
    }
  } catch {
    // the process ended, or a descriptor closed while being read
  }
  return false;
}

/**
 * Waits until the service answers /readyz with 200 on a port it listens on itself: suites run
 * side by side, and a port handed out by `freePort` can be taken meanwhile by another suite's
 * service, whose /readyz would then answer for this one.
 */
export async function waitReady(service: RunningService, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (service.process.exitCode !== null) {
      throw new Error(`${service.name} exited with ${service.process.exitCode}:\n${tail(service.log)}`);
    }
    try {
      if (listensItself(service)) {
        const res = await fetch(`http://127.0.0.1:${service.port}/readyz`);
        if (res.status === 200) return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${service.name} not ready within ${timeoutMs} ms:\n${tail(service.log)}`);
}

export function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** The environment of a run's services: the shared servers, this run's schemas and subjects. */
export function runEnv(id: string, logLevel: string, extraEnv: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL,
    NATS_URL,
    DB_SCHEMA_PREFIX: `${id}_`,
    NATS_SUBJECT_PREFIX: id,
    LOG_LEVEL: logLevel,
    ...extraEnv,
  };
}

/**
 * Starts the five services as processes with their own schemas, subjects and ports;
 * `perService` adds variables for one service only (its NATS credentials).
 */
export async function startStack(
  id: string,
  extraEnv: NodeJS.ProcessEnv = {},
  perService: Partial<Record<ServiceName, NodeJS.ProcessEnv>> = {},
): Promise<Stack> {
  const env = runEnv(id, 'info', extraEnv);
  for (const name of SERVICES) env[PORT_VARS[name]] = String(await freePort());
  const logDir = join(ROOT, '.parley', 'test-logs', id);
  mkdirSync(logDir, { recursive: true });
  const services = new Map<ServiceName, RunningService>();
  /** Ports given anew to services whose first port was taken (they win over `perService`). */
  const moved: Partial<Record<ServiceName, string>> = {};
  const start = (name: ServiceName) =>
    startService(
      name,
      { ...env, ...perService[name], ...(moved[name] ? { [PORT_VARS[name]]: moved[name] } : {}) },
      logDir,
    );
  for (const name of SERVICES) services.set(name, start(name));
  // A port taken between `freePort` and the service's listen (another suite, an outgoing
  // connection) stops that service with EADDRINUSE: it starts again on another port.
  const ready = async (name: ServiceName) => {
    for (let attempt = 1; ; attempt++) {
      const service = services.get(name) as RunningService;
      try {
        await waitReady(service);
        return;
      } catch (error) {
        if (attempt >= 3 || !ownLog(service).includes('EADDRINUSE')) throw error;
        moved[name] = env[PORT_VARS[name]] = String(await freePort());
        services.set(name, start(name));
      }
    }
  };
  try {
    await Promise.all(SERVICES.map((name) => ready(name)));
  } catch (error) {
    await stopStack({ id, env, services });
    throw error;
  }
  return { id, env, services };
}

export async function stopService(service: RunningService, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const child = service.process;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

export async function stopStack(stack: Stack): Promise<void> {
  await Promise.all([...stack.services.values()].map((s) => stopService(s)));
}

/** Drops this run's schemas and streams. */
export async function cleanupRun(id: string): Promise<void> {
  const pg = new Client({ connectionString: DATABASE_URL });
  await pg.connect();
  try {
    const { rows } = await pg.query<{ nspname: string }>(`select nspname from pg_namespace where nspname like $1`, [
      `${id}\\_%`,
    ]);
    for (const { nspname } of rows) await pg.query(`drop schema if exists "${nspname}" cascade`);
  } finally {
    await pg.end();
  }
  const nc = await connect({ servers: NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    for await (const name of jsm.streams.names()) {
      if (name.startsWith(`${id}_`)) await jsm.streams.delete(name);
    }
  } finally {
    await nc.close();
  }
}

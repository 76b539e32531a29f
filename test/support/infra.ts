import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { freePort } from './stack';

/**
 * NATS (with JetStream), Redis and PostgreSQL servers of a test's own, on free ports and in a
 * temporary folder, never the machine's shared ones. Each can be killed with SIGKILL and
 * started again on the same port and the same data. `stop` ends it and removes its folder; a
 * server still running when the test process ends, however it ends, is killed with it.
 */
export interface OwnInfrastructure {
  readonly name: 'nats' | 'redis' | 'postgres';
  readonly port: number;
  readonly url: string;
  /** SIGKILL to every process of it; resolves once they are gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data; resolves once it answers. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const PG_BIN = '/usr/lib/postgresql/15/bin';
const SETPRIV = '/usr/bin/setpriv';
const asRoot = process.getuid?.() === 0;

/** The pids started here, killed if the test process exits before `stop`. */
const live = new Set<number>();
let exitHook = false;
function track(pid: number | undefined): void {
  if (pid === undefined) return;
  live.add(pid);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of live) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGKILL to `pid` and its children (listed while it is stopped, so it forks no more). */
async function killTree(pid: number): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGSTOP');
  } catch {
    return;
  }
  const pids = [pid, ...childrenOf(pid)];
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await until(`SIGKILL of ${pids.join(', ')}`, () => pids.every((p) => !alive(p)), 10_000);
  live.delete(pid);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * A server of the test's own, its output appended to `log`. With setpriv it gets SIGKILL when
 * the test process dies (and, as root, runs as `user`).
 */
class ServerProcess {
  private child: ChildProcess | undefined;
  private failed: Error | undefined;

  constructor(
    private readonly name: string,
    private readonly argv: string[],
    private readonly log: string,
    private readonly user?: string,
  ) {}

  async start(answers: () => Promise<boolean>): Promise<void> {
    const [binary, ...args] = this.argv;
    const wrapped = existsSync(SETPRIV)
      ? [
          SETPRIV,
          '--pdeathsig',
          'SIGKILL',
          ...(this.user && asRoot ? [`--reuid=${this.user}`, `--regid=${this.user}`, '--init-groups'] : []),
          '--',
          binary,
          ...args,
        ]
      : this.argv;
    if (this.user && asRoot && !existsSync(SETPRIV)) throw new Error(`${SETPRIV} is missing: ${this.name} cannot run`);
    const out = openSync(this.log, 'a');
    this.failed = undefined;
    const child = spawn(wrapped[0], wrapped.slice(1), { stdio: ['ignore', out, out] });
    closeSync(out);
    child.once('error', (error) => (this.failed = error));
    track(child.pid);
    this.child = child;
    await until(`${this.name} on its port`, async () => {
      if (this.failed) throw new Error(`${this.name} could not start: ${this.failed.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${this.name} exited (${child.exitCode ?? child.signalCode}):\n${tail(this.log)}`);
      }
      return answers();
    });
  }

  async kill(): Promise<void> {
    const pid = this.child?.pid;
    if (pid !== undefined) await killTree(pid);
  }
}

/** Sends `line` and resolves with whether the first bytes back start with `expect`. */
function greets(port: number, line: string | undefined, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      if (line) socket.write(line);
    });
    let got = '';
    socket.setTimeout(500, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('data', (data) => {
      got += data.toString();
      if (got.length >= expect.length) {
        socket.destroy();
        resolve(got.startsWith(expect));
      }
    });
    socket.once('error', () => resolve(false));
  });
}

function own(
  name: OwnInfrastructure['name'],
  port: number,
  url: string,
  dir: string,
  server: ServerProcess,
  answers: () => Promise<boolean>,
): OwnInfrastructure {
  return {
    name,
    port,
    url,
    kill: () => server.kill(),
    restart: () => server.start(answers),
    async stop() {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A nats-server with JetStream, its store in a folder of its own. */
export async function startOwnNats(): Promise<OwnInfrastructure> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'parley-nats-'));
  const argv = ['nats-server', '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'store')];
  const server = new ServerProcess('nats-server', argv, join(dir, 'nats.log'));
  const answers = () => greets(port, undefined, 'INFO ');
  await server.start(answers);
  return own('nats', port, `nats://127.0.0.1:${port}`, dir, server, answers);
}

/** A redis-server that keeps its data in an append-only file in a folder of its own. */
export async function startOwnRedisServer(): Promise<OwnInfrastructure> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'parley-redis-'));
  const argv = ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--dir', dir];
  argv.push('--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '');
  const server = new ServerProcess('redis-server', argv, join(dir, 'redis.log'));
  const answers = () => greets(port, 'PING\r\n', '+PONG');
  await server.start(answers);
  return own('redis', port, `redis://127.0.0.1:${port}`, dir, server, answers);
}

/**
 * A PostgreSQL cluster of its own (initdb, trust authentication, run as the user postgres when
 * the test runs as root, which the server refuses) with a `parley` database. `kill` sends
 * SIGKILL to the postmaster and every backend, as when the host or container dies; `restart`
 * runs crash recovery on the same data.
 */
export async function startOwnPostgres(): Promise<OwnInfrastructure> {
  for (const tool of ['initdb', 'postgres']) {
    if (!existsSync(join(PG_BIN, tool))) throw new Error(`${join(PG_BIN, tool)} is missing: PostgreSQL 15 is needed`);
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'parley-pg-'));
  const data = join(dir, 'data');
  const user = asRoot ? 'postgres' : undefined;
  if (user) {
    const { uid, gid } = userIds(user);
    chownSync(dir, uid, gid);
  }
  const initdb = [join(PG_BIN, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync'];
  const [command, ...args] = user ? ['runuser', '-u', user, '--', ...initdb] : initdb;
  const made = spawnSync(command, args, { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`initdb failed (${made.status}): ${made.stderr || made.stdout}`);

  // The server process itself (not pg_ctl's detached one) is this process's child: it dies with it.
  const argv = [join(PG_BIN, 'postgres'), '-D', data, '-p', String(port), '-k', dir];
  argv.push('-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'max_connections=200');
  const server = new ServerProcess('postgres', argv, join(dir, 'postgres.log'), user);
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const answers = async () => {
    const client = new Client({ connectionString: admin, connectionTimeoutMillis: 500 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  await server.start(answers);
  const client = new Client({ connectionString: admin });
  await client.connect();
  await client.query('create database parley');
  await client.end();
  return own('postgres', port, `postgres://postgres@127.0.0.1:${port}/parley`, dir, server, answers);
}

function userIds(name: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no user ${name}: the test runs PostgreSQL as that user`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ROOT, SERVICES, type ServiceName } from './stack';

/**
 * The processes of a stack this test did not start itself (the e2e stack is started by the
 * global setup, in another process): found by their NATS_SUBJECT_PREFIX and working folder,
 * watched through /proc, and started again as they were if one of them dies.
 */
export interface ServiceProcess {
  name: ServiceName;
  pid: number;
  port: number;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  log: string;
}

function readProc(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** The five services of the run whose NATS_SUBJECT_PREFIX is `runId`. */
export function findServiceProcesses(
  runId: string,
  ports: Record<ServiceName, number>,
): Map<ServiceName, ServiceProcess> {
  const found = new Map<ServiceName, ServiceProcess>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const environ = readProc(pid, 'environ');
    if (
      !environ?.includes(`\0NATS_SUBJECT_PREFIX=${runId}\0`) &&
      !environ?.startsWith(`NATS_SUBJECT_PREFIX=${runId}\0`)
    ) {
      continue;
    }
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      continue;
    }
    const name = basename(cwd) as ServiceName;
    if (!SERVICES.includes(name) || cwd !== join(ROOT, 'services', name)) continue;
    const env: Record<string, string> = {};
    for (const pair of environ.split('\0')) {
      const at = pair.indexOf('=');
      if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1);
    }
    const argv = (readProc(pid, 'cmdline') ?? '').split('\0').filter(Boolean);
    const log = join(ROOT, '.parley', 'test-logs', runId, `${name}.log`);
    found.set(name, { name, pid, port: ports[name], argv, cwd, env, log });
  }
  return found;
}

/** Running, and not a zombie waiting for its parent. */
export function isAlive(pid: number): boolean {
  const stat = readProc(pid, 'stat');
  if (!stat) return false;
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

const restarted = new Set<number>();
let exitHook = false;

/**
 * Starts a service again with the command line, folder and environment it had, writing to the
 * same log, and waits until it answers /readyz. The new process ends with this test process.
 * On return, `argv` is the service's own command line again (not the setpriv wrapper).
 */
export async function restartService(service: ServiceProcess, timeoutMs = 60_000): Promise<ServiceProcess> {
  const out = openSync(service.log, 'a');
  // With setpriv, the service gets SIGTERM when this process ends, however it ends.
  const argv = existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', '--pdeathsig', 'SIGTERM', '--', ...service.argv]
    : service.argv;
  const child = spawn(argv[0], argv.slice(1), {
    cwd: service.cwd,
    env: service.env,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${service.name} did not start again`);
  restarted.add(pid);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const p of restarted) {
        try {
          process.kill(p, 'SIGTERM');
        } catch {
          // already gone
        }
      }
    });
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) throw new Error(`${service.name} exited again while starting`);
    try {
      const res = await fetch(`http://127.0.0.1:${service.port}/readyz`);
      if (res.status === 200) return { ...service, pid };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${service.name} not ready within ${timeoutMs} ms after a restart`);
}

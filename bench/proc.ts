/**
 * CPU time and resident memory of processes from /proc (Linux), for the benchmarks: CPU per
 * request per process is the difference of utime+stime between two snapshots.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of utime/stime in /proc/<pid>/stat. */
export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime+stime of a process in ticks, or undefined when it is gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    return ticksIn(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
}

/** utime+stime from a `stat` file of /proc (a process's or one of its threads'). */
function ticksIn(statFile: string): number {
  const stat = readFileSync(statFile, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * utime+stime of a process's V8 worker threads (comm `V8Worker`) in ticks: V8's concurrent
 * marking and sweeping, parallel scavenging and background compilation. Already counted in
 * `cpuTicks`; read apart to see what the heap costs besides the main thread.
 */
export function v8WorkerTicks(pid: number): number | undefined {
  try {
    let sum = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== 'V8Worker') continue;
        sum += ticksIn(`/proc/${pid}/task/${tid}/stat`);
      } catch {
        // the thread ended meanwhile
      }
    }
    return sum;
  } catch {
    return undefined;
  }
}

/** Write system calls (write, writev: socket writes included) a process made so far, from /proc/<pid>/io. */
export function writeSyscalls(pid: number): number | undefined {
  try {
    const m = /syscw:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Pids whose command name (/proc/<pid>/comm) is `comm`. */
export function pidsNamed(comm: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** VmRSS of a process in MiB, or undefined when it is gone. */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

/** A group of processes measured as one: fixed pids, or every process with a command name (re-read each time). */
export type ProcGroup = { pids: number[] } | { comm: string };

export type CpuSnapshot = Map<string, Map<number, number>>;

/** A per-process counter (`read`: CPU ticks by default) of every group's processes. */
export function cpuSnapshot(
  groups: Record<string, ProcGroup>,
  read: (pid: number) => number | undefined = cpuTicks,
): CpuSnapshot {
  const snap: CpuSnapshot = new Map();
  for (const [name, group] of Object.entries(groups)) {
    const pids = 'pids' in group ? group.pids : pidsNamed(group.comm);
    const ticks = new Map<number, number>();
    for (const pid of pids) {
      const t = read(pid);
      if (t !== undefined) ticks.set(pid, t);
    }
    snap.set(name, ticks);
  }
  return snap;
}

/**
 * CPU microseconds per request of each group between two snapshots. A process that started
 * in between counts in full; one that ended in between is lost (its last ticks are unknown).
 */
export function cpuPerRequest(before: CpuSnapshot, after: CpuSnapshot, requests: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, ticks] of after) {
    let sum = 0;
    for (const [pid, t] of ticks) sum += t - (before.get(name)?.get(pid) ?? 0);
    out[name] = Math.round(((sum / CLK_TCK) * 1e6) / Math.max(1, requests));
  }
  return out;
}

/** A counter's increase per request of each group between two snapshots, to one decimal. */
export function countPerRequest(before: CpuSnapshot, after: CpuSnapshot, requests: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, counts] of after) {
    let sum = 0;
    for (const [pid, n] of counts) sum += n - (before.get(name)?.get(pid) ?? 0);
    out[name] = Math.round((sum / Math.max(1, requests)) * 10) / 10;
  }
  return out;
}

/**
 * Summarises a V8 CPU profile (a `.cpuprofile` written by `node --cpu-prof`, e.g. with
 * `PARLEY_PROFILE=<service>`): self and inclusive time by function and by package (the
 * node_modules package, a Node.js built-in module, or the repository's own file). Percentages
 * are of the busy time (all samples but `(idle)`).
 *
 *   node bench/dist/bench/cpuprofile.js <file.cpuprofile> [--from-ms N] [--to-ms M] [--top 15]
 *
 * --from-ms/--to-ms keep only the samples in that window, measured from the profile's start
 * (about the process start): bench/messages.ts prints each load window (`window_ms`) relative
 * to the stack's start, so start-up and set-up can be left out.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { ROOT } from '../test/support/stack';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** The package a frame belongs to: a node_modules package, a built-in module, our file, or a V8 pseudo-frame. */
export function packageOf(functionName: string, url: string): string {
  if (SPECIAL.has(functionName) && !url) return functionName;
  if (!url) return '(native)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const parts = url.slice(modules + '/node_modules/'.length).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    return `node:${parts[0] === 'internal' && parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0]}`;
  }
  const path = url.startsWith('file://') ? new URL(url).pathname : url;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

function frameKey(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || '(anonymous)';
  if (!url) return name;
  return `${name} ${packageOf(functionName, url)}:${lineNumber + 1}`;
}

export function summarise(profile: CpuProfile, fromMs = 0, toMs = Infinity) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfFn = new Map<string, number>();
  const selfPkg = new Map<string, number>();
  const totalFn = new Map<string, number>();
  const totalPkg = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  let t = 0;
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const ms = t / 1000;
    if (ms < fromMs || ms > toMs) continue;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const leaf = byId.get(profile.samples[i]);
    if (!leaf) continue;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    add(selfFn, frameKey(leaf), dt);
    add(selfPkg, packageOf(leaf.callFrame.functionName, leaf.callFrame.url), dt);
    const fns = new Set<string>();
    const pkgs = new Set<string>();
    for (let n: ProfileNode | undefined = leaf; n; n = byId.get(parent.get(n.id) ?? -1)) {
      if (n.callFrame.functionName === '(root)') break;
      fns.add(frameKey(n));
      pkgs.add(packageOf(n.callFrame.functionName, n.callFrame.url));
    }
    for (const k of fns) add(totalFn, k, dt);
    for (const k of pkgs) add(totalPkg, k, dt);
  }
  return { busyMs: busy / 1000, idleMs: idle / 1000, selfFn, selfPkg, totalFn, totalPkg };
}

function table(title: string, m: Map<string, number>, busy: number, top: number): string {
  const rows = [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    title,
    ...rows.map(
      ([k, v]) => `  ${((v / busy) * 100).toFixed(1).padStart(5)} %  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`,
    ),
  ].join('\n');
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const opt = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : undefined;
  };
  const file = args[0];
  const top = opt('--top') ?? 15;
  const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, opt('--from-ms'), opt('--to-ms'));
  const busy = s.busyMs * 1000;
  console.log(`${file}\nbusy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms (percentages of busy)`);
  console.log(table('self time by package', s.selfPkg, busy, top));
  console.log(table('self time by function', s.selfFn, busy, top));
  console.log(table('inclusive time by package (on the stack)', s.totalPkg, busy, top));
  console.log(table('inclusive time by function', s.totalFn, busy, top));
}

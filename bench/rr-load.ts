/**
 * A small HTTP load generator for bench/messages.ts: `connections` keep-alive connections, each
 * sending its next request as soon as the previous answer is read, the targets taken
 * round-robin across all connections (request i goes to target i mod n). `hey` sends every
 * request to one URL with one set of headers; this sends each to its own session with its
 * owner's token. Runs as its own process (like `hey`), so its CPU is separate from the
 * benchmark's and can be read from /proc.
 *
 *   node bench/dist/bench/rr-load.js <plan.json>      prints one JSON line: RrResult
 *
 * plan.json: { method, body?, requests, connections, targets: [{ url, headers? }] }
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';

export interface RrPlan {
  method: 'GET' | 'POST';
  body?: string;
  requests: number;
  connections: number;
  targets: { url: string; headers?: Record<string, string> }[];
}

export interface RrResult {
  per_second: number;
  p50_ms: number;
  p99_ms: number;
  completed: number;
  failures: number;
  statuses: Record<string, number>;
  seconds: number;
  /** The generator's own CPU (user + system) during the run, microseconds. */
  cpu_us: number;
}

async function run(plan: RrPlan): Promise<RrResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: plan.connections, maxFreeSockets: plan.connections });
  const body = plan.body === undefined ? undefined : Buffer.from(plan.body);
  const targets = plan.targets.map((t) => {
    const url = new URL(t.url);
    const headers: Record<string, string | number> = { ...t.headers };
    if (body) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.length;
    }
    return { host: url.hostname, port: Number(url.port), path: url.pathname + url.search, headers };
  });
  const statuses: Record<string, number> = {};
  const latencies: number[] = [];
  let failures = 0;
  let next = 0;
  const once = (i: number) =>
    new Promise<number>((resolve) => {
      const t = targets[i % targets.length];
      const req = request(
        { agent, method: plan.method, host: t.host, port: t.port, path: t.path, headers: t.headers },
        (res) => {
          res.on('data', () => undefined);
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', () => resolve(0));
        },
      );
      req.on('error', () => resolve(0));
      req.end(body);
    });
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: plan.connections }, async () => {
      while (next < plan.requests) {
        const i = next++;
        const t = performance.now();
        const status = await once(i);
        latencies.push(performance.now() - t);
        const key = status === 0 ? 'error' : String(status);
        statuses[key] = (statuses[key] ?? 0) + 1;
        if (status === 0 || status >= 400) failures++;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    per_second: Math.round(latencies.length / seconds),
    p50_ms: Math.round(at(0.5) * 100) / 100,
    p99_ms: Math.round(at(0.99) * 100) / 100,
    completed: latencies.length,
    failures,
    statuses,
    seconds: Math.round(seconds * 100) / 100,
    cpu_us: used.user + used.system,
  };
}

if (require.main === module) {
  const plan = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as RrPlan;
  run(plan).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}

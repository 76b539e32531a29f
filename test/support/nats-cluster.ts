import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './stack';

/**
 * A NATS cluster of the test's own: `size` local nats-server processes on free ports (never the
 * machine's shared 4222), each with its own store directory, routes to all the others and
 * JetStream, under one cluster name, as deploy/nats/nats-cluster.conf describes. A node can be
 * killed (SIGKILL) and started again on the same ports and store. Every process is stopped by
 * `stop()`, and ends with the test process in any case (setpriv's parent-death signal).
 */
export interface NatsNode {
  name: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  storeDir: string;
  url: string;
  process?: ChildProcess;
}

export interface NatsCluster {
  name: string;
  nodes: NatsNode[];
  /** Every node's client URL, comma-separated: a NATS_URL. */
  url: string;
  /** The jetstream block's `sync_interval`, when this nats-server knows it (2.10+); else undefined. */
  syncInterval: string | undefined;
  version: string;
  kill(node: NatsNode): Promise<void>;
  start(node: NatsNode): Promise<void>;
  /** Every node up, JetStream current on each (`/healthz`) and a meta leader all of them know. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  log(node: NatsNode): string;
  stop(): Promise<void>;
}

const NATS_SERVER = 'nats-server';

/** The installed nats-server's version, e.g. `2.9.10`. Fails (never skips) without one. */
export function natsServerVersion(): string {
  const out = execFileSync(NATS_SERVER, ['--version'], { encoding: 'utf8' });
  const version = /v(\d+\.\d+\.\d+)/.exec(out)?.[1];
  if (!version) throw new Error(`cannot read the version of nats-server: ${out}`);
  return version;
}

/** `sync_interval` (and its `always`) came with nats-server 2.10; 2.9 refuses the field and will not start. */
export function supportsSyncInterval(version: string): boolean {
  const [major, minor] = version.split('.').map(Number);
  return major > 2 || (major === 2 && minor >= 10);
}

export async function startNatsCluster(size = 3, name = 'parley-test'): Promise<NatsCluster> {
  const version = natsServerVersion();
  // What deploy/nats/nats-cluster.conf runs with, where this server has it (docs/operations.md).
  const syncInterval = supportsSyncInterval(version) ? 'always' : undefined;
  const root = mkdtempSync(join(tmpdir(), 'parley-nats-cluster-'));
  const nodes: NatsNode[] = [];
  for (let i = 1; i <= size; i++) {
    const port = await freePort();
    nodes.push({
      name: `n${i}`,
      port,
      clusterPort: await freePort(),
      monitorPort: await freePort(),
      storeDir: join(root, `n${i}`),
      url: `nats://127.0.0.1:${port}`,
    });
  }
  const routes = nodes.map((n) => `nats-route://127.0.0.1:${n.clusterPort}`);
  for (const node of nodes) {
    mkdirSync(node.storeDir, { recursive: true });
    writeFileSync(
      join(root, `${node.name}.conf`),
      [
        `server_name: ${node.name}`,
        `listen: 127.0.0.1:${node.port}`,
        `http: 127.0.0.1:${node.monitorPort}`,
        'max_payload: 1048576',
        'jetstream {',
        `  store_dir: "${node.storeDir}"`,
        '  max_memory_store: 256MB',
        '  max_file_store: 2GB',
        ...(syncInterval ? [`  sync_interval: ${syncInterval}`] : []),
        '}',
        'cluster {',
        `  name: ${name}`,
        `  listen: 127.0.0.1:${node.clusterPort}`,
        `  routes: [${routes.join(', ')}]`,
        '}',
        '',
      ].join('\n'),
    );
  }
  const logOf = (node: NatsNode) => join(root, `${node.name}.log`);

  const start = async (node: NatsNode) => {
    if (node.process && node.process.exitCode === null && node.process.signalCode === null) return;
    const argv = ['-c', join(root, `${node.name}.conf`), '-l', logOf(node)];
    // With setpriv, the node gets SIGKILL when this process ends, however it ends.
    const child = existsSync('/usr/bin/setpriv')
      ? spawn('/usr/bin/setpriv', ['--pdeathsig', 'SIGKILL', '--', NATS_SERVER, ...argv], { stdio: 'ignore' })
      : spawn(NATS_SERVER, argv, { stdio: 'ignore' });
    node.process = child;
    const deadline = Date.now() + 15_000;
    while (!(await answers(node, '/varz'))) {
      if (child.exitCode !== null)
        throw new Error(`nats-server ${node.name} exited with ${child.exitCode}:\n${cluster.log(node)}`);
      if (Date.now() > deadline)
        throw new Error(`nats-server ${node.name} did not start within 15 s:\n${cluster.log(node)}`);
      await sleep(100);
    }
  };

  const kill = async (node: NatsNode) => {
    const child = node.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await exited;
  };

  const cluster: NatsCluster = {
    name,
    nodes,
    url: nodes.map((n) => n.url).join(','),
    syncInterval,
    version,
    kill,
    start,
    async waitHealthy(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(nodes.map((n) => health(n)));
        if (states.every((s) => s.ok) && new Set(states.map((s) => s.leader)).size === 1) return;
        if (Date.now() > deadline) {
          throw new Error(`the NATS cluster is not healthy within ${timeoutMs} ms: ${JSON.stringify(states)}`);
        }
        await sleep(200);
      }
    },
    log: (node) => (existsSync(logOf(node)) ? readFileSync(logOf(node), 'utf8').split('\n').slice(-40).join('\n') : ''),
    async stop() {
      await Promise.all(
        nodes.map(async (node) => {
          const child = node.process;
          if (!child || child.exitCode !== null || child.signalCode !== null) return;
          const exited = new Promise<void>((r) => child.once('exit', () => r()));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }),
      );
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    // Started together: each waits for the others' routes, and JetStream elects a meta leader.
    await Promise.all(nodes.map((n) => start(n)));
    await cluster.waitHealthy();
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function answers(node: NatsNode, path: string): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${node.monitorPort}${path}`)).ok;
  } catch {
    return false;
  }
}

/** `/healthz` (JetStream enabled and current on this node) and the meta leader this node knows. */
async function health(node: NatsNode): Promise<{ node: string; ok: boolean; leader?: string; detail?: string }> {
  try {
    const healthz = await fetch(`http://127.0.0.1:${node.monitorPort}/healthz`);
    const body = await healthz.text();
    if (!healthz.ok) return { node: node.name, ok: false, detail: body };
    const jsz = (await (await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`)).json()) as {
      meta_cluster?: { leader?: string; cluster_size?: number };
    };
    const leader = jsz.meta_cluster?.leader;
    return { node: node.name, ok: Boolean(leader), leader };
  } catch (error) {
    return { node: node.name, ok: false, detail: error instanceof Error ? error.message : String(error) };
  }
}

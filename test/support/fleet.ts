import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  PORT_VARS,
  ROOT,
  SERVICES,
  freePort,
  runEnv,
  startService,
  stopService,
  waitReady,
  type RunningService,
  type ServiceName,
} from './stack';

/**
 * Several instances of every service on this machine, each on HTTP ports of its own and all
 * with the same schemas, NATS_SUBJECT_PREFIX and Redis: they share the request subjects' queue
 * groups, the durable consumers and the limits, as instances on several machines would.
 */
export interface Fleet {
  id: string;
  /** The environment every instance shares (ports aside). */
  env: NodeJS.ProcessEnv;
  /** Instance i of each service is `instances[name][i]`; a restarted one takes its place. */
  instances: Record<ServiceName, RunningService[]>;
  logDir: string;
}

/** Starts `count` instances of each service: all of instance 0 first (it migrates), then the others. */
export async function startFleet(id: string, count: number, extraEnv: NodeJS.ProcessEnv = {}): Promise<Fleet> {
  const env = runEnv(id, 'warn', extraEnv);
  const logDir = join(ROOT, '.parley', 'test-logs', id);
  const fleet: Fleet = {
    id,
    env,
    logDir,
    instances: Object.fromEntries(SERVICES.map((name) => [name, []])) as unknown as Fleet['instances'],
  };
  try {
    for (let i = 0; i < count; i++) {
      const started = await Promise.all(SERVICES.map((name) => startInstance(fleet, name, i)));
      await Promise.all(started.map((s) => waitReady(s)));
    }
  } catch (error) {
    await stopFleet(fleet);
    throw error;
  }
  return fleet;
}

/** Starts instance `index` of a service (again, on the ports it had, after a kill), logging to `<logDir>/<index>/`. */
export async function startInstance(fleet: Fleet, name: ServiceName, index: number): Promise<RunningService> {
  const previous = fleet.instances[name][index];
  const port = previous?.port ?? (await freePort());
  const dir = join(fleet.logDir, String(index));
  mkdirSync(dir, { recursive: true });
  const service = startService(name, { ...fleet.env, [PORT_VARS[name]]: String(port) }, dir);
  fleet.instances[name][index] = service;
  return service;
}

export async function restartInstance(fleet: Fleet, name: ServiceName, index: number): Promise<RunningService> {
  const service = await startInstance(fleet, name, index);
  await waitReady(service);
  return service;
}

/** Kills instance `index` of each named service with SIGKILL, all at once, and waits until they are gone. */
export async function killInstances(fleet: Fleet, names: readonly ServiceName[], index: number): Promise<void> {
  await Promise.all(names.map((name) => stopService(fleet.instances[name][index], 'SIGKILL')));
}

export function gatewayUrls(fleet: Fleet): string[] {
  return fleet.instances.gateway.map((g) => `http://127.0.0.1:${g.port}`);
}

export async function stopFleet(fleet: Fleet): Promise<void> {
  await Promise.all(
    Object.values(fleet.instances)
      .flat()
      .map((s) => stopService(s)),
  );
}

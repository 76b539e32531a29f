import type { Redis } from 'ioredis';
import type { Nats } from '../messaging/nats';
import type { DatabaseHandle } from './tokens';

export interface ReadinessReport {
  ready: boolean;
  /** Ready, but Redis is away: caches are bypassed and limits are counted in memory. */
  degraded: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

/** What the service goes on without: its loss degrades, it does not make the service unready. */
const OPTIONAL_CHECKS = new Set(['redis']);

const CHECK_TIMEOUT_MS = 2000;

async function within<T>(work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What `/readyz` checks: Postgres and migrations (where the service has a database), NATS, Redis. */
export class Readiness {
  migrated = false;

  constructor(
    private readonly nats: Nats,
    private readonly redis: Redis | undefined,
    private readonly database: DatabaseHandle | undefined,
  ) {}

  async report(): Promise<ReadinessReport> {
    const checks: ReadinessReport['checks'] = {};
    const run = async (name: string, check: () => Promise<void>) => {
      try {
        await within(check());
        checks[name] = { ok: true };
      } catch (error) {
        checks[name] = { ok: false, detail: error instanceof Error ? error.message : String(error) };
      }
    };
    await Promise.all([
      run('nats', async () => {
        if (this.nats.connection.isClosed()) throw new Error('connection closed');
        // Known at once: a flush while reconnecting would only wait out the check's timeout.
        if (!this.nats.connected) throw new Error('disconnected; reconnecting');
        await this.nats.connection.flush();
      }),
      this.redis &&
        run('redis', async () => {
          await this.redis?.ping();
        }),
      this.database &&
        run('postgres', async () => {
          await this.database?.ping();
        }),
      this.database &&
        run('migrations', async () => {
          if (this.migrated || !this.database) return;
          const pending = await this.database.pendingMigrations();
          if (pending > 0) throw new Error(`${pending} migrations not applied`);
          this.migrated = true;
        }),
    ]);
    const ready = Object.entries(checks).every(([name, c]) => c.ok || OPTIONAL_CHECKS.has(name));
    return { ready, degraded: ready && Object.values(checks).some((c) => !c.ok), checks };
  }
}

import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  AccessControlRpc,
  AccessRpc,
  usageMsgId,
  usageSubject,
  type DeadLetter,
  type Principal,
  type UsageEventInput,
} from '@parley/contracts';
import { Metrics, Nats, RpcClient, createServiceApp, startServing } from '@parley/kit';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config';
import {
  DATABASE_URL,
  NATS_URL,
  ROOT,
  cleanupRun,
  freePort,
  startService,
  stopService,
  waitReady,
  type RunningService,
} from '../../../test/support/stack';

export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/**
 * The usage service in this process against the machine's Postgres, NATS and Redis, beside a
 * real access service (a process) that knows the bots. Schemas and subjects are the run's own.
 */
export class UsageFixture {
  app!: INestApplication;
  rpc!: RpcClient;
  nats!: Nats;
  js!: JetStreamClient;
  orm!: MikroORM;
  admin!: Principal;
  private access: RunningService | undefined;

  constructor(readonly id: string) {}

  async start(extraEnv: Record<string, string> = {}): Promise<void> {
    const env = {
      ...process.env,
      DATABASE_URL,
      NATS_URL,
      DB_SCHEMA_PREFIX: `${this.id}_`,
      NATS_SUBJECT_PREFIX: this.id,
      LOG_LEVEL: 'warn',
      PARLEY_ADMIN_USERNAME: 'root',
      PARLEY_ADMIN_PASSWORD: 'root-password-1',
      ACCESS_HTTP_PORT: String(await freePort()),
      ...extraEnv,
    };
    const logDir = join(ROOT, '.parley', 'test-logs', this.id);
    mkdirSync(logDir, { recursive: true });
    this.access = startService('access', env, logDir);
    await waitReady(this.access);

    const config = loadConfig({ ...env, LOG_LEVEL: process.env.TEST_SERVICE_LOG_LEVEL ?? 'silent' });
    this.app = await createServiceApp(AppModule.forRoot(config), { logger: false });
    await startServing(this.app);
    this.rpc = this.app.get(RpcClient);
    this.nats = this.app.get(Nats);
    this.orm = this.app.get(MikroORM);
    this.js = jetstream(this.nats.connection);
    const login = await this.rpc.call(AccessRpc.login, { username: 'root', password: 'root-password-1' });
    const rootId = JSON.parse(Buffer.from(login.access_token.split('.')[1], 'base64url').toString()).sub as string;
    this.admin = { type: 'user', id: rootId, is_admin: true };
  }

  async stop(): Promise<void> {
    await this.app?.close();
    if (this.access) await stopService(this.access);
    await cleanupRun(this.id);
  }

  async bot(name: string, owner: Principal = this.admin): Promise<string> {
    const created = await this.rpc.call(AccessControlRpc.createBot, { actor: owner, name: `${name}-${randomUUID()}` });
    return created.id;
  }

  /** Publishes as a bot would; `msgId` overrides the Nats-Msg-Id (to get past the stream's dedup). */
  async publish(event: UsageEventInput, options: { msgId?: string; subjectBot?: string } = {}) {
    return this.js.publish(this.nats.subject(usageSubject(options.subjectBot ?? event.bot_id)), JSON.stringify(event), {
      msgID: options.msgId ?? usageMsgId(event),
    });
  }

  async sql<T = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> {
    return this.orm.em.fork().execute<T[]>(text, params);
  }

  /** Dead letters on `dlq.usage` so far. */
  async deadLetters(): Promise<DeadLetter[]> {
    const jsm = await jetstreamManager(this.nats.connection);
    const stream = this.nats.stream('DLQ');
    const info = await jsm.streams.info(stream);
    const out: DeadLetter[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const msg = await jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (msg && msg.subject === this.nats.subject('dlq.usage')) out.push(msg.json<DeadLetter>());
    }
    return out;
  }

  /** Messages stored on a DOMAIN subject. */
  async domainCount(subject: string): Promise<number> {
    const jsm = await jetstreamManager(this.nats.connection);
    const info = await jsm.streams.info(this.nats.stream('DOMAIN'), { subjects_filter: this.nats.subject(subject) });
    return info.state.subjects?.[this.nats.subject(subject)] ?? 0;
  }

  async metric(name: string): Promise<string> {
    return this.app.get(Metrics).registry.getSingleMetricAsString(name);
  }
}

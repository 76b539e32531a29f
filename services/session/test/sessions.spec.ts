import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { jetstreamManager } from '@nats-io/jetstream';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AccessControlRpc, AccessRpc, DOMAIN_STREAM, SessionRpc, type Principal } from '@parley/contracts';
import { Nats, RpcClient, createServiceApp, startServing } from '@parley/kit';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config';
import { SessionsService } from '../src/sessions/sessions.service';
import {
  DATABASE_URL,
  NATS_URL,
  ROOT,
  cleanupRun,
  freePort,
  runId,
  startService,
  stopService,
  waitReady,
  type RunningService,
} from '../../../test/support/stack';

const id = runId('ses');
// Filled in once the access service (a real one, as a process) knows them.
let alice: Principal;
let bob: Principal;
let carol: Principal;
let admin: Principal;
let bot: Principal;

describe(SessionsService.name, () => {
  let app: INestApplication;
  let rpc: RpcClient;
  let access: RunningService;

  beforeAll(async () => {
    const env = {
      ...process.env,
      DATABASE_URL,
      NATS_URL,
      DB_SCHEMA_PREFIX: `${id}_`,
      NATS_SUBJECT_PREFIX: id,
      LOG_LEVEL: 'warn',
      PARLEY_ADMIN_USERNAME: 'root',
      PARLEY_ADMIN_PASSWORD: 'root-password-1',
      ACCESS_HTTP_PORT: String(await freePort()),
    };
    const logDir = join(ROOT, '.parley', 'test-logs', id);
    mkdirSync(logDir, { recursive: true });
    access = startService('access', env, logDir);
    await waitReady(access);

    const config = loadConfig({ ...env, LOG_LEVEL: 'silent' });
    app = await createServiceApp(AppModule.forRoot(config), { logger: false });
    await startServing(app);
    rpc = app.get(RpcClient);

    const login = await rpc.call(AccessRpc.login, { username: 'root', password: 'root-password-1' });
    const rootId = JSON.parse(Buffer.from(login.access_token.split('.')[1], 'base64url').toString()).sub as string;
    admin = { type: 'user', id: rootId, is_admin: true };
    const user = async (name: string): Promise<Principal> => {
      const u = await rpc.call(AccessRpc.createUser, {
        actor: admin,
        username: `${name}-${id}`,
        password: 'password-1234',
      });
      return { type: 'user', id: u.id, is_admin: false };
    };
    [alice, bob, carol] = [await user('alice'), await user('bob'), await user('carol')];
    const created = await rpc.call(AccessControlRpc.createBot, { actor: alice, name: 'helper' });
    bot = { type: 'bot', id: created.id };
  });

  afterAll(async () => {
    await app?.close();
    if (access) await stopService(access);
    await cleanupRun(id);
  });

  it('creates a session for its owner and announces it through the outbox', async () => {
    const s = await rpc.call(SessionRpc.create, { actor: alice, title: 'hello' });
    expect(s).toMatchObject({ user_id: alice.id, title: 'hello', status: 'active', message_count: 0 });
    const nats = app.get(Nats);
    const jsm = await jetstreamManager(nats.connection);
    const last = await (async () => {
      for (let i = 0; i < 50; i++) {
        const found = await jsm.streams
          .getMessage(nats.stream(DOMAIN_STREAM), { last_by_subj: nats.subject('evt.session.created') })
          .catch(() => null);
        if (found) return found;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no evt.session.created in the stream');
    })();
    expect(last.json()).toMatchObject({ session_id: s.id, user_id: alice.id, bot_id: null });
  });

  it('lets owners and admins read and change, hides sessions from others', async () => {
    const s = await rpc.call(SessionRpc.create, { actor: alice, title: 'mine' });
    await expect(rpc.call(SessionRpc.get, { actor: bob, id: s.id })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(rpc.call(SessionRpc.update, { actor: bob, id: s.id, patch: { title: 'x' } })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(rpc.call(SessionRpc.remove, { actor: bob, id: s.id })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect((await rpc.call(SessionRpc.get, { actor: admin, id: s.id })).title).toBe('mine');
    const changed = await rpc.call(SessionRpc.update, { actor: admin, id: s.id, patch: { metadata: { k: 'v' } } });
    expect(changed.metadata).toEqual({ k: 'v' });
    await expect(
      rpc.call(SessionRpc.list, { actor: bob, user_id: alice.id, page: { kind: 'cursor', limit: 10 } }),
    ).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('lets a bot open sessions for a user of its own and nothing else', async () => {
    await expect(rpc.call(SessionRpc.create, { actor: bot, title: 'no user' })).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
    const s = await rpc.call(SessionRpc.create, { actor: bot, user_id: bob.id });
    expect(s).toMatchObject({ user_id: bob.id, bot_id: bot.id });
    expect((await rpc.call(SessionRpc.get, { actor: bot, id: s.id })).id).toBe(s.id);
    expect((await rpc.call(SessionRpc.get, { actor: bob, id: s.id })).id).toBe(s.id);
    await expect(rpc.call(SessionRpc.remove, { actor: bot, id: s.id })).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it("refuses a bot the caller may not read with 404, and accepts its owner's", async () => {
    await expect(rpc.call(SessionRpc.create, { actor: bob, bot_id: bot.id })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    const s = await rpc.call(SessionRpc.create, { actor: alice, bot_id: bot.id });
    expect(s.bot_id).toBe(bot.id);
  });

  it('filters and pages with a stable keyset cursor', async () => {
    const made = [];
    for (let i = 0; i < 7; i++) made.push(await rpc.call(SessionRpc.create, { actor: carol, title: `t${i % 2}-${i}` }));
    const seen: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await rpc.call(SessionRpc.list, { actor: carol, page: { kind: 'cursor', limit: 3, cursor } });
      if (!('next_cursor' in page)) throw new Error('expected a cursor page');
      seen.push(...page.items.map((s) => s.id));
      if (!page.next_cursor) break;
      cursor = page.next_cursor;
    }
    expect(seen).toEqual(made.map((s) => s.id).reverse());
    const odd = await rpc.call(SessionRpc.list, {
      actor: carol,
      q: 't1-',
      page: { kind: 'offset', page: 1, size: 10 },
    });
    expect(odd).toMatchObject({ total: 3, page: 1, size: 10 });
    const pct = await rpc.call(SessionRpc.list, { actor: carol, q: '%', page: { kind: 'cursor', limit: 10 } });
    expect(pct.items).toHaveLength(0);
  });

  it('refuses a cursor that was edited, made for other filters or for another caller', async () => {
    for (let i = 0; i < 3; i++) await rpc.call(SessionRpc.create, { actor: carol, title: `cursor-${i}` });
    const list = (actor: Principal, cursor: string | undefined, filters: { status?: 'active'; q?: string } = {}) =>
      rpc.call(SessionRpc.list, { actor, ...filters, page: { kind: 'cursor', limit: 1, cursor } });
    const first = await list(carol, undefined, { q: 'cursor-' });
    if (!('next_cursor' in first) || !first.next_cursor) throw new Error('expected a next cursor');
    const cursor = first.next_cursor;
    expect((await list(carol, cursor, { q: 'cursor-' })).items).toHaveLength(1);
    const [id, body, mac] = cursor.split('.') as [string, string, string];
    const lastSeen = JSON.parse(Buffer.from(body, 'base64url').toString()) as string[];
    const forged = Buffer.from(JSON.stringify(['9999-01-01T00:00:00.000Z', lastSeen[1]])).toString('base64url');
    const refused: [string, () => Promise<unknown>][] = [
      ['edited values', () => list(carol, `${id}.${forged}.${mac}`, { q: 'cursor-' })],
      [
        'edited signature',
        () => list(carol, `${id}.${body}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`, { q: 'cursor-' }),
      ],
      ['unsigned values', () => list(carol, 'WyJ4Il0', { q: 'cursor-' })],
      ['another filter', () => list(carol, cursor, { q: 'cursor-', status: 'active' })],
      ['no filter', () => list(carol, cursor)],
      ['another caller', () => list(admin, cursor, { q: 'cursor-' })],
    ];
    for (const [why, call] of refused) {
      await expect(call().then(() => why)).rejects.toMatchObject({
        code: 'INVALID_CURSOR',
        errors: [{ field: 'cursor', message: expect.any(String) }],
      });
    }
  });
});

import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import {
  AccessControlRpc,
  AccessRpc,
  type CursorPage,
  type Page,
  type PageRequest,
  type Principal,
} from '@parley/contracts';
import { RpcClient, createServiceApp, startServing } from '@parley/kit';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config';
import { UsersService } from '../src/users/users.service';
import { DATABASE_URL, NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

const id = runId('lists');

type Lister = (actor: Principal, page: PageRequest) => Promise<Page<object>>;

interface ListCase {
  list: string;
  /** Who walks the list, and another caller who may read it too. */
  caller: () => Principal;
  another: () => Principal;
  read: Lister;
  /** The same caller on another filter of the list, or on another list where it has none. */
  elsewhere: Lister;
  key: (item: object) => string;
}

const byId = (item: object) => (item as { id: string }).id;

function cursorPage(page: Page<object>): CursorPage<object> {
  if (!('next_cursor' in page)) throw new Error('expected a cursor page');
  return page;
}

describe('access lists', () => {
  let app: INestApplication;
  let rpc: RpcClient;
  let root: Principal;
  let admin2: Principal;
  let alice: Principal;
  let lead: Principal;
  const groups: string[] = [];
  const bots: string[] = [];

  beforeAll(async () => {
    const config = loadConfig({
      DATABASE_URL,
      NATS_URL,
      DB_SCHEMA_PREFIX: `${id}_`,
      NATS_SUBJECT_PREFIX: id,
      LOG_LEVEL: 'silent',
      PARLEY_ADMIN_USERNAME: 'root',
      PARLEY_ADMIN_PASSWORD: 'root-password-1',
    });
    app = await createServiceApp(AppModule.forRoot(config), { logger: false });
    await startServing(app);
    rpc = app.get(RpcClient);
    const rootUser = await app.get(UsersService).findByUsername('root');
    if (!rootUser) throw new Error('no bootstrap admin');
    root = { type: 'user', id: rootUser.id, is_admin: true };

    const user = async (name: string): Promise<Principal> => {
      const u = await rpc.call(AccessRpc.createUser, { actor: root, username: name, password: 'password-1234' });
      return { type: 'user', id: u.id, is_admin: false };
    };
    const made = await user('second-admin');
    await rpc.call(AccessRpc.updateUser, { actor: root, id: made.id, patch: { is_admin: true } });
    admin2 = { type: 'user', id: made.id, is_admin: true };
    alice = await user('alice');
    lead = await user('lead');
    const listed: Principal[] = [];
    for (let i = 0; i < 4; i++) listed.push(await user(`lister-${i}`));

    for (let i = 0; i < 3; i++)
      groups.push((await rpc.call(AccessControlRpc.createGroup, { actor: root, name: `g${i}` })).id);
    await rpc.call(AccessControlRpc.putMember, { actor: root, id: groups[0], user_id: lead.id, is_group_admin: true });
    for (const member of listed.slice(0, 3)) {
      await rpc.call(AccessControlRpc.putMember, {
        actor: root,
        id: groups[0],
        user_id: member.id,
        is_group_admin: false,
      });
    }
    await rpc.call(AccessControlRpc.putMember, {
      actor: root,
      id: groups[1],
      user_id: alice.id,
      is_group_admin: false,
    });
    for (let i = 0; i < 3; i++) await rpc.call(AccessControlRpc.createRole, { actor: root, name: `role-${i}` });
    for (let i = 0; i < 3; i++)
      bots.push((await rpc.call(AccessControlRpc.createBot, { actor: alice, name: `b${i}` })).id);
    await rpc.call(AccessControlRpc.createBot, { actor: admin2, name: 'not-alices' });
    for (let i = 0; i < 2; i++) await rpc.call(AccessControlRpc.createKey, { actor: alice, id: bots[0] });
  });

  afterAll(async () => {
    await app?.close();
    await cleanupRun(id);
  });

  const cases: ListCase[] = [
    {
      list: 'users',
      caller: () => root,
      another: () => admin2,
      read: (actor, page) => rpc.call(AccessRpc.listUsers, { actor, q: 'lister-', page }),
      elsewhere: (actor, page) => rpc.call(AccessRpc.listUsers, { actor, q: 'lister-1', page }),
      key: byId,
    },
    {
      list: 'groups',
      caller: () => root,
      another: () => admin2,
      read: (actor, page) => rpc.call(AccessControlRpc.listGroups, { actor, page }),
      elsewhere: (actor, page) => rpc.call(AccessControlRpc.listRoles, { actor, page }),
      key: byId,
    },
    {
      list: 'group members',
      caller: () => root,
      another: () => lead,
      read: (actor, page) => rpc.call(AccessControlRpc.listMembers, { actor, id: groups[0], page }),
      elsewhere: (actor, page) => rpc.call(AccessControlRpc.listMembers, { actor, id: groups[1], page }),
      key: (m) => (m as { user_id: string }).user_id,
    },
    {
      list: 'roles',
      caller: () => root,
      another: () => admin2,
      read: (actor, page) => rpc.call(AccessControlRpc.listRoles, { actor, page }),
      elsewhere: (actor, page) => rpc.call(AccessControlRpc.listGroups, { actor, page }),
      key: byId,
    },
    {
      list: 'bots',
      caller: () => alice,
      another: () => root,
      read: (actor, page) => rpc.call(AccessControlRpc.listBots, { actor, page }),
      elsewhere: (actor, page) => rpc.call(AccessControlRpc.listKeys, { actor, id: bots[0], page }),
      key: byId,
    },
    {
      list: 'bot keys',
      caller: () => alice,
      another: () => root,
      read: (actor, page) => rpc.call(AccessControlRpc.listKeys, { actor, id: bots[0], page }),
      elsewhere: (actor, page) => rpc.call(AccessControlRpc.listKeys, { actor, id: bots[1], page }),
      key: byId,
    },
  ];

  describe.each(cases.map((c) => [c.list, c] as const))('%s', (_, c) => {
    it('walks with cursors to every item exactly once, in the order of page/size', async () => {
      const all = await c.read(c.caller(), { kind: 'offset', page: 1, size: 200 });
      const expected = all.items.map(c.key);
      expect(expected.length).toBeGreaterThanOrEqual(3);
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = cursorPage(await c.read(c.caller(), { kind: 'cursor', limit: 2, cursor }));
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items.map(c.key));
        cursor = page.next_cursor ?? undefined;
      } while (cursor);
      expect(seen).toEqual(expected);
    });

    it('refuses an edited cursor, one from another filter or list, and one from another caller', async () => {
      const first = cursorPage(await c.read(c.caller(), { kind: 'cursor', limit: 1 }));
      const cursor = first.next_cursor;
      if (!cursor) throw new Error('expected a next cursor');
      const [keyId, , mac] = cursor.split('.') as [string, string, string];
      const otherPosition = Buffer.from(JSON.stringify(['00000000-0000-7000-8000-000000000000'])).toString('base64url');
      const page = (value: string): PageRequest => ({ kind: 'cursor', limit: 1, cursor: value });
      const refused: [string, () => Promise<unknown>][] = [
        ['edited position', () => c.read(c.caller(), page(`${keyId}.${otherPosition}.${mac}`))],
        ['unsigned position', () => c.read(c.caller(), page('WyJ4Il0'))],
        ['another filter or list', () => c.elsewhere(c.caller(), page(cursor))],
        ['another caller', () => c.read(c.another(), page(cursor))],
      ];
      for (const [why, call] of refused) {
        await expect(call().then(() => why)).rejects.toMatchObject({
          code: 'INVALID_CURSOR',
          errors: [{ field: 'cursor', message: expect.any(String) }],
        });
      }
      expect(cursorPage(await c.read(c.caller(), page(cursor))).items).toHaveLength(1);
    });
  });
});

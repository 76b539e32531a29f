import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { parse as parseYaml } from 'yaml';
import { AccessControlRpc, AccessRpc, type Permission, type Principal, type Resource } from '@parley/contracts';
import { RpcClient, createServiceApp, startServing } from '@parley/kit';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config';
import { UsersService } from '../src/users/users.service';
import { PermissionsService } from '../src/permissions/permissions.service';
import { DATABASE_URL, NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

interface Model {
  fixtures: {
    admins: string[];
    users: string[];
    groups: Record<string, { admins: string[]; members: string[] }>;
    bots: Record<string, { owner: string }>;
    keys: Record<string, { bot: string; expires_in_ms?: number }>;
    roles: Record<
      string,
      { users: string[]; grants: { type: 'bot' | 'session'; id: string; permission: Permission }[] }
    >;
    sessions: Record<string, { owner: string; bot?: string; groups: string[] }>;
  };
  phases: {
    name: string;
    do?: string[];
    cases: { who: string; can: Permission; on: string; expect: 'allow' | 'deny'; why: string }[];
    keys?: { key: string; expect: 'valid' | 'invalid'; why?: string }[];
  }[];
}

const model = parseYaml(readFileSync(join(__dirname, 'model.yaml'), 'utf8')) as Model;
const id = runId('acl');

describe(`${PermissionsService.name} model (model.yaml)`, () => {
  let app: INestApplication;
  let rpc: RpcClient;
  const users = new Map<string, string>();
  const groups = new Map<string, string>();
  const bots = new Map<string, string>();
  const keys = new Map<string, { id: string; secret: string; bot: string }>();
  const roles = new Map<string, string>();
  const sessions = new Map<string, Resource>();
  let root: Principal;

  const principal = (who: string): Principal => {
    if (who.startsWith('bot ')) return { type: 'bot', id: bots.get(who.slice(4)) ?? '' };
    return { type: 'user', id: users.get(who) ?? '', is_admin: model.fixtures.admins.includes(who) };
  };
  const resource = (on: string): Resource => {
    const [type, name] = on.split(' ');
    if (type === 'session') return sessions.get(name) as Resource;
    return { type: 'bot', id: bots.get(name) ?? '' };
  };
  const resourceId = (type: string, name: string) =>
    name === '*' ? '*' : type === 'bot' ? (bots.get(name) ?? '') : (sessions.get(name)?.id ?? '');

  beforeAll(async () => {
    const config = loadConfig({
      DATABASE_URL,
      NATS_URL,
      DB_SCHEMA_PREFIX: `${id}_`,
      NATS_SUBJECT_PREFIX: id,
      LOG_LEVEL: 'silent',
      PARLEY_ADMIN_USERNAME: model.fixtures.admins[0],
      PARLEY_ADMIN_PASSWORD: 'root-password-1',
    });
    app = await createServiceApp(AppModule.forRoot(config), { logger: false });
    await startServing(app);
    rpc = app.get(RpcClient);
    const rootUser = await app.get(UsersService).findByUsername(model.fixtures.admins[0]);
    if (!rootUser) throw new Error('no bootstrap admin');
    users.set(rootUser.username, rootUser.id);
    root = { type: 'user', id: rootUser.id, is_admin: true };

    const f = model.fixtures;
    for (const name of f.users) {
      const u = await rpc.call(AccessRpc.createUser, {
        actor: root,
        username: `${name}-${id}`,
        password: 'password-1234',
      });
      users.set(name, u.id);
    }
    for (const [name, g] of Object.entries(f.groups)) {
      const group = await rpc.call(AccessControlRpc.createGroup, { actor: root, name: `${name}-${id}` });
      groups.set(name, group.id);
      for (const u of g.admins)
        await rpc.call(AccessControlRpc.putMember, {
          actor: root,
          id: group.id,
          user_id: users.get(u) ?? '',
          is_group_admin: true,
        });
      for (const u of g.members)
        await rpc.call(AccessControlRpc.putMember, {
          actor: root,
          id: group.id,
          user_id: users.get(u) ?? '',
          is_group_admin: false,
        });
    }
    for (const [name, b] of Object.entries(f.bots)) {
      const bot = await rpc.call(AccessControlRpc.createBot, { actor: principal(b.owner), name });
      bots.set(name, bot.id);
    }
    for (const [name, k] of Object.entries(f.keys)) {
      const expires_at = k.expires_in_ms ? new Date(Date.now() + k.expires_in_ms).toISOString() : undefined;
      const key = await rpc.call(AccessControlRpc.createKey, { actor: root, id: bots.get(k.bot) ?? '', expires_at });
      keys.set(name, { id: key.id, secret: key.api_key, bot: k.bot });
    }
    for (const [name, s] of Object.entries(f.sessions)) {
      sessions.set(name, {
        type: 'session',
        id: uuidv7(),
        user_id: users.get(s.owner) ?? '',
        bot_id: s.bot ? (bots.get(s.bot) ?? null) : null,
        group_ids: s.groups.map((g) => groups.get(g) ?? ''),
      });
    }
    for (const [name, r] of Object.entries(f.roles)) {
      const role = await rpc.call(AccessControlRpc.createRole, { actor: root, name: `${name}-${id}` });
      roles.set(name, role.id);
      const grants = r.grants.map((g) => ({
        resource_type: g.type,
        resource_id: resourceId(g.type, g.id),
        permission: g.permission,
      }));
      await rpc.call(AccessControlRpc.putGrants, { actor: root, id: role.id, grants });
      for (const u of r.users)
        await rpc.call(AccessControlRpc.putUserRole, { actor: root, user_id: users.get(u) ?? '', role_id: role.id });
    }
  });

  afterAll(async () => {
    await app?.close();
    await cleanupRun(id);
  });

  const change = async (step: string) => {
    const [verb, a, b] = step.split(' ');
    switch (verb) {
      case 'revoke-grants':
        return rpc.call(AccessControlRpc.putGrants, { actor: root, id: roles.get(a) ?? '', grants: [] });
      case 'remove-member':
        return rpc.call(AccessControlRpc.deleteMember, {
          actor: root,
          id: groups.get(a) ?? '',
          user_id: users.get(b) ?? '',
        });
      case 'disable-user':
        return rpc.call(AccessRpc.updateUser, { actor: root, id: users.get(a) ?? '', patch: { enabled: false } });
      case 'disable-bot':
        return rpc.call(AccessControlRpc.updateBot, { actor: root, id: bots.get(a) ?? '', patch: { enabled: false } });
      case 'revoke-key': {
        const key = keys.get(a);
        return rpc.call(AccessControlRpc.deleteKey, {
          actor: root,
          id: bots.get(key?.bot ?? '') ?? '',
          key_id: key?.id ?? '',
        });
      }
      case 'wait':
        return new Promise((r) => setTimeout(r, Number(a)));
      default:
        throw new Error(`unknown step ${step}`);
    }
  };

  for (const phase of model.phases) {
    describe(phase.name, () => {
      beforeAll(async () => {
        for (const step of phase.do ?? []) await change(step);
      });

      it.each(phase.cases.map((c) => [`${c.who} ${c.can} ${c.on}: ${c.expect} (${c.why})`, c] as const))(
        '%s',
        async (_, c) => {
          const decision = await rpc.call(AccessControlRpc.check, {
            subject: principal(c.who),
            action: c.can,
            resource: resource(c.on),
          });
          expect(decision.allowed ? 'allow' : 'deny').toBe(c.expect);
        },
      );

      if (phase.keys?.length) {
        it.each(phase.keys.map((k) => [`key ${k.key}: ${k.expect}${k.why ? ` (${k.why})` : ''}`, k] as const))(
          '%s',
          async (_, k) => {
            const secret = keys.get(k.key)?.secret ?? 'prl_00000000_forgedforgedforgedforgedforgedforgedfor';
            const answer = rpc.call(AccessControlRpc.verifyKey, { api_key: secret });
            if (k.expect === 'valid')
              await expect(answer).resolves.toMatchObject({ bot_id: bots.get(keys.get(k.key)?.bot ?? '') });
            else await expect(answer).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
          },
        );
      }

      it('answers a batch exactly as one check at a time', async () => {
        const checks = phase.cases.map((c) => ({ subject: principal(c.who), action: c.can, resource: resource(c.on) }));
        const { results } = await rpc.call(AccessControlRpc.checkBatch, { checks });
        expect(results.map((r) => (r.allowed ? 'allow' : 'deny'))).toEqual(phase.cases.map((c) => c.expect));
      });
    });
  }
});

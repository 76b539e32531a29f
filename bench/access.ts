/**
 * access.permissions.check latency from a client process (cold and warm) at 10k users,
 * 1k groups and 100k grants; and GET /sessions/{id} through the gateway for the owner, a
 * group admin and a role-grant reader, in the same run. One JSON line per result.
 *
 *   node bench/dist/bench/access.js        (after `tsc -p bench/tsconfig.json`)
 */
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { Client } from 'pg';
import { cleanupRun, DATABASE_URL, NATS_URL, runId, startStack, stopStack } from '../test/support/stack';
import { load, machine, summarize } from './stats';

const USERS = Number(process.env.BENCH_USERS ?? 10_000);
const GROUPS = Number(process.env.BENCH_GROUPS ?? 1_000);
const GRANTS = Number(process.env.BENCH_GRANTS ?? 100_000);
const ROLES = 1_000;
const BOTS = 1_000;
const CHECKS = Number(process.env.BENCH_CHECKS ?? 2_000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);

const print = (result: Record<string, unknown>) => console.log(JSON.stringify({ bench: 'access', ...result }));

async function seed(schema: string): Promise<void> {
  const pg = new Client({ connectionString: DATABASE_URL });
  await pg.connect();
  const q = (sql: string) => pg.query(sql.replaceAll('$S', `"${schema}"`));
  try {
    await q(`insert into $S.users (id, username, email, password_hash, enabled, is_admin, created_at, updated_at)
             select gen_random_uuid(), 'bench-' || i, null, 'x', true, false, now(), now() from generate_series(1, ${USERS}) i`);
    await q(`insert into $S.groups (id, name, remark, is_default, created_at)
             select gen_random_uuid(), 'bench-group-' || i, null, false, now() from generate_series(1, ${GROUPS}) i`);
    await q(
      `create temp table u as select id, row_number() over (order by id) as n from $S.users where username like 'bench-%'`,
    );
    await q(
      `create temp table g as select id, row_number() over (order by id) as n from $S.groups where name like 'bench-group-%'`,
    );
    // Every user in two groups; the first member of each group administers it.
    await q(`insert into $S.memberships (group_id, user_id, is_group_admin, created_at)
             select g.id, u.id, u.n <= ${GROUPS}, now() from u join g on g.n = (u.n % ${GROUPS}) + 1
             union all
             select g.id, u.id, false, now() from u join g on g.n = ((u.n * 7) % ${GROUPS}) + 1
             on conflict do nothing`);
    await q(`insert into $S.bots (id, name, description, enabled, owner_id, created_at, updated_at)
             select gen_random_uuid(), 'bench-bot-' || i, null, true, (select id from u where n = (i % ${USERS}) + 1), now(), now()
             from generate_series(1, ${BOTS}) i`);
    await q(
      `insert into $S.roles (id, name, created_at) select gen_random_uuid(), 'bench-role-' || i, now() from generate_series(1, ${ROLES}) i`,
    );
    await q(
      `create temp table r as select id, row_number() over (order by id) as n from $S.roles where name like 'bench-role-%'`,
    );
    await q(
      `create temp table b as select id, row_number() over (order by id) as n from $S.bots where name like 'bench-bot-%'`,
    );
    await q(
      `insert into $S.user_roles (user_id, role_id, created_at) select u.id, r.id, now() from u join r on r.n = (u.n % ${ROLES}) + 1`,
    );
    // Grants: half on bots, half on sessions that do not exist here (sessions live in the session service).
    await q(`insert into $S.role_grants (role_id, resource_type, resource_id, permission)
             select r.id, case when i % 2 = 0 then 'bot' else 'session' end,
                    case when i % 2 = 0 then b.id::text else gen_random_uuid()::text end,
                    (array['read','write','manage'])[(i % 3) + 1]
             from generate_series(1, ${GRANTS}) i
             join r on r.n = (i % ${ROLES}) + 1
             join b on b.n = ((i / ${ROLES}) % ${BOTS}) + 1
             on conflict do nothing`);
    await q('analyze');
  } finally {
    await pg.end();
  }
}

async function main(): Promise<void> {
  const id = runId('bench');
  const password = randomBytes(12).toString('base64url');
  const stack = await startStack(id, {
    PARLEY_ADMIN_USERNAME: 'admin',
    PARLEY_ADMIN_PASSWORD: password,
    RATE_LIMIT_PER_MINUTE: '100000000',
    LOG_LEVEL: 'warn',
  });
  try {
    const schema = `${id}_access`;
    const seeded = Date.now();
    await seed(schema);
    const pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    const counts = (
      await pg.query(
        `select (select count(*) from "${schema}".users)::int as users, (select count(*) from "${schema}".groups)::int as groups,
                (select count(*) from "${schema}".role_grants)::int as grants, (select count(*) from "${schema}".memberships)::int as memberships`,
      )
    ).rows[0];
    const users = (
      await pg.query(`select id from "${schema}".users where username like 'bench-%' order by random() limit 500`)
    ).rows.map((r) => r.id as string);
    const groups = (
      await pg.query(`select id from "${schema}".groups where name like 'bench-group-%' order by random() limit 500`)
    ).rows.map((r) => r.id as string);
    const bots = (await pg.query(`select id from "${schema}".bots order by random() limit 500`)).rows.map(
      (r) => r.id as string,
    );
    await pg.end();
    print({ result: 'seeded', ...counts, seconds: Math.round((Date.now() - seeded) / 100) / 10, machine: machine() });

    const nc = await connect({ servers: NATS_URL });
    const subject = `${id}.access.permissions.check`;
    const pick = <T>(list: T[], i: number) => list[i % list.length];
    const checks = Array.from({ length: CHECKS }, (_, i) => ({
      subject: { type: 'user', id: pick(users, i * 13), is_admin: false },
      action: (['read', 'write', 'manage'] as const)[i % 3],
      resource:
        i % 4 === 0
          ? { type: 'bot', id: pick(bots, i * 7) }
          : {
              type: 'session',
              id: crypto.randomUUID(),
              user_id: pick(users, i * 31),
              bot_id: i % 2 ? pick(bots, i) : null,
              group_ids: [pick(groups, i), pick(groups, i * 3)],
            },
    }));
    const ask = async (i: number) => {
      const reply = await nc.request(subject, JSON.stringify(checks[i % checks.length]), { timeout: 5000 });
      if (reply.headers?.get('Parley-Error')) throw new Error(reply.string());
    };
    const sequential = async (label: string) => {
      const samples: number[] = [];
      for (let i = 0; i < checks.length; i++) {
        const t = performance.now();
        await ask(i);
        samples.push(performance.now() - t);
      }
      print({ result: `permissions.check ${label}`, concurrency: 1, ...summarize(samples) });
    };
    await sequential('cold (first time asked, decision computed in Postgres)');
    await sequential('warm (decision cached in Redis)');
    const warmLoad = await load(CHECKS * 2, CONCURRENCY, ask);
    print({
      result: 'permissions.check warm',
      concurrency: CONCURRENCY,
      per_second: warmLoad.per_second,
      ...summarize(warmLoad.samples),
    });
    await nc.close();

    // Through the gateway: the owner, a group admin of the owner's group, a reader by role grant.
    const gateway = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const call = async (method: string, path: string, token?: string, body?: unknown) => {
      const res = await fetch(`${gateway}${path}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : undefined;
    };
    const loginAs = async (username: string, pw: string) =>
      (await call('POST', '/api/v1/auth/login', undefined, { username, password: pw })).access_token as string;
    const admin = await loginAs('admin', password);
    const user = async (name: string) => {
      const u = await call('POST', '/api/v1/users', admin, { username: name, password: 'bench-password' });
      return { id: u.id as string, token: await loginAs(name, 'bench-password') };
    };
    const owner = await user('bench-owner');
    const lead = await user('bench-lead');
    const reader = await user('bench-reader');
    const group = await call('POST', '/api/v1/groups', admin, { name: 'bench-team' });
    await call('PUT', `/api/v1/groups/${group.id}/members/${lead.id}`, admin, { is_group_admin: true });
    await call('PUT', `/api/v1/groups/${group.id}/members/${owner.id}`, admin, { is_group_admin: false });
    const session = await call('POST', '/api/v1/sessions', owner.token, { title: 'bench' });
    const role = await call('POST', '/api/v1/roles', admin, { name: 'bench-session-reader' });
    await call('PUT', `/api/v1/roles/${role.id}/grants`, admin, {
      grants: [{ resource_type: 'session', resource_id: session.id, permission: 'read' }],
    });
    await call('PUT', `/api/v1/users/${reader.id}/roles/${role.id}`, admin);

    for (const [who, token] of [
      ['owner', owner.token],
      ['group admin', lead.token],
      ['role grant', reader.token],
    ] as const) {
      await call('GET', `/api/v1/sessions/${session.id}`, token);
      const run = await load(REQUESTS, CONCURRENCY, async () => {
        await call('GET', `/api/v1/sessions/${session.id}`, token);
      });
      print({
        result: `GET /sessions/{id} as ${who}`,
        concurrency: CONCURRENCY,
        per_second: run.per_second,
        ...summarize(run.samples),
      });
    }
  } finally {
    await stopStack(stack);
    await cleanupRun(id);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

import { Client } from 'pg';
import { SignJWT, importJWK, type JWK } from 'jose';
import { DATABASE_URL } from '../support/stack';
import { adminLogin, api, eventually, login, newUser } from '../support/http';

const uuid = '01900000-0000-7000-8000-000000000000';

/** Signs a token with the access service's own key, as it would, but already expired. */
async function expiredToken(sub: string): Promise<string> {
  const pg = new Client({ connectionString: DATABASE_URL });
  await pg.connect();
  try {
    const { rows } = await pg.query(
      `select kid, private_jwk from "${process.env.E2E_RUN_ID}_access".signing_keys limit 1`,
    );
    const key = await importJWK(rows[0].private_jwk as JWK, 'EdDSA');
    const past = Math.floor(Date.now() / 1000) - 3600;
    return new SignJWT({ adm: true })
      .setProtectedHeader({ alg: 'EdDSA', kid: rows[0].kid, typ: 'JWT' })
      .setSubject(sub)
      .setIssuer('parley-access')
      .setAudience('parley')
      .setIssuedAt(past - 900)
      .setExpirationTime(past)
      .sign(key);
  } finally {
    await pg.end();
  }
}

describe('access control (e2e)', () => {
  let admin: string;

  beforeAll(async () => {
    admin = await adminLogin();
  });

  it('manages groups and their members, with group admins managing their own group', async () => {
    const name = `team-${Date.now().toString(36)}`;
    const g = await api('POST', '/api/v1/groups', { token: admin, body: { name, remark: 'support team' } });
    expect(g.status).toBe(201);
    expect(g.body).toEqual({
      id: expect.any(String),
      name,
      remark: 'support team',
      is_default: false,
      created_at: expect.any(String),
    });
    expect((await api('POST', '/api/v1/groups', { token: admin, body: { name } })).status).toBe(409);

    const lead = await newUser(admin, 'lead');
    const member = await newUser(admin, 'member');
    const outsider = await newUser(admin, 'outsider');
    const put = await api('PUT', `/api/v1/groups/${g.body.id}/members/${lead.id}`, {
      token: admin,
      body: { is_group_admin: true },
    });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ user_id: lead.id, username: lead.username, is_group_admin: true });

    // The group's admin manages members; others are refused with 403.
    expect(
      (await api('PUT', `/api/v1/groups/${g.body.id}/members/${member.id}`, { token: lead.token, body: {} })).status,
    ).toBe(200);
    expect(
      (await api('PUT', `/api/v1/groups/${g.body.id}/members/${outsider.id}`, { token: outsider.token, body: {} }))
        .status,
    ).toBe(403);
    const members = await api('GET', `/api/v1/groups/${g.body.id}/members`, { token: lead.token });
    expect(members.status).toBe(200);
    expect(members.body.items.map((m: { user_id: string }) => m.user_id).sort()).toEqual([lead.id, member.id].sort());
    expect((await api('GET', `/api/v1/groups/${g.body.id}/members`, { token: member.token })).status).toBe(403);

    // A group admin reads the sessions of the group's members, created after they joined.
    const s = (await api('POST', '/api/v1/sessions', { token: member.token, body: { title: 'team chat' } })).body;
    expect(s.group_ids).toContain(g.body.id);
    expect((await api('GET', `/api/v1/sessions/${s.id}`, { token: lead.token })).status).toBe(200);
    expect((await api('PATCH', `/api/v1/sessions/${s.id}`, { token: lead.token, body: { title: 'x' } })).status).toBe(
      403,
    );
    expect((await api('GET', `/api/v1/sessions/${s.id}`, { token: outsider.token })).status).toBe(404);
    const listed = await api('GET', `/api/v1/sessions?user_id=${member.id}`, { token: lead.token });
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((x: { id: string }) => x.id)).toContain(s.id);
    expect((await api('GET', `/api/v1/sessions?user_id=${member.id}`, { token: outsider.token })).status).toBe(403);

    expect(
      (await api('DELETE', `/api/v1/groups/${g.body.id}/members/${member.id}`, { token: lead.token })).status,
    ).toBe(204);
    const renamed = await api('PATCH', `/api/v1/groups/${g.body.id}`, { token: admin, body: { remark: null } });
    expect(renamed.body.remark).toBeNull();
    const all = await api('GET', '/api/v1/groups', { token: admin });
    const byDefault = all.body.items.find((x: { is_default: boolean }) => x.is_default);
    expect(byDefault.name).toBe('default');
    expect((await api('DELETE', `/api/v1/groups/${byDefault.id}`, { token: admin })).status).toBe(409);
    expect((await api('DELETE', `/api/v1/groups/${g.body.id}`, { token: admin })).status).toBe(204);
    expect((await api('GET', '/api/v1/groups', { token: lead.token })).status).toBe(403);
  });

  it('grants rights through roles, and takes them away at once', async () => {
    const owner = await newUser(admin, 'botowner');
    const reader = await newUser(admin, 'reader');
    const bot = (
      await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'helper', description: 'answers' } })
    ).body;
    const role = await api('POST', '/api/v1/roles', {
      token: admin,
      body: { name: `readers-${Date.now().toString(36)}` },
    });
    expect(role.status).toBe(201);
    const grants = { grants: [{ resource_type: 'bot', resource_id: bot.id, permission: 'read' }] };
    const put = await api('PUT', `/api/v1/roles/${role.body.id}/grants`, { token: admin, body: grants });
    expect(put.status).toBe(200);
    expect(put.body.grants).toEqual(grants.grants);
    expect((await api('GET', `/api/v1/roles/${role.body.id}/grants`, { token: admin })).body.grants).toEqual(
      grants.grants,
    );
    expect((await api('GET', '/api/v1/roles', { token: admin })).body.items.map((r: { id: string }) => r.id)).toContain(
      role.body.id,
    );

    expect((await api('GET', `/api/v1/bots/${bot.id}`, { token: reader.token })).status).toBe(404);
    expect((await api('PUT', `/api/v1/users/${reader.id}/roles/${role.body.id}`, { token: admin })).status).toBe(200);
    const me = await api('GET', '/api/v1/me', { token: reader.token });
    expect(me.body.roles).toEqual([role.body.name]);
    expect((await api('GET', `/api/v1/bots/${bot.id}`, { token: reader.token })).status).toBe(200);
    expect(
      (await api('GET', '/api/v1/bots', { token: reader.token })).body.items.map((b: { id: string }) => b.id),
    ).toEqual([bot.id]);
    expect((await api('PATCH', `/api/v1/bots/${bot.id}`, { token: reader.token, body: { name: 'mine' } })).status).toBe(
      403,
    );
    expect((await api('GET', `/api/v1/bots/${bot.id}/keys`, { token: reader.token })).status).toBe(403);

    // The bot's sessions: readable through the grant, listable by bot_id.
    const botKey = bot.api_key as string;
    const s = await api('POST', '/api/v1/sessions', {
      headers: { 'x-api-key': botKey },
      body: { user_id: owner.id, title: 'from the bot' },
    });
    expect(s.status).toBe(201);
    expect(s.body).toMatchObject({ bot_id: bot.id, user_id: owner.id });
    expect((await api('GET', `/api/v1/sessions/${s.body.id}`, { token: reader.token })).status).toBe(200);
    const byBot = await api('GET', `/api/v1/sessions?bot_id=${bot.id}`, { token: reader.token });
    expect(byBot.body.items.map((x: { id: string }) => x.id)).toContain(s.body.id);

    expect((await api('DELETE', `/api/v1/users/${reader.id}/roles/${role.body.id}`, { token: admin })).status).toBe(
      204,
    );
    expect((await api('GET', `/api/v1/bots/${bot.id}`, { token: reader.token })).status).toBe(404);
    expect((await api('GET', `/api/v1/sessions/${s.body.id}`, { token: reader.token })).status).toBe(404);
    expect((await api('GET', `/api/v1/sessions?bot_id=${bot.id}`, { token: reader.token })).status).toBe(403);
  });

  it('gives a bot key its own identity, its own sessions, and refuses it within a second of revocation', async () => {
    const owner = await newUser(admin, 'keyowner');
    const created = await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'kb' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'kb', enabled: true, owner_id: owner.id, description: null });
    const key = created.body.api_key as string;
    expect(key).toMatch(/^prl_[0-9a-f]{8}_/);
    const me = await api('GET', '/api/v1/me', { headers: { 'x-api-key': key } });
    expect(me.status).toBe(200);
    expect(me.body).toEqual({ type: 'bot', id: created.body.id, name: 'kb' });

    const second = await api('POST', `/api/v1/bots/${created.body.id}/keys`, { token: owner.token, body: {} });
    expect(second.status).toBe(201);
    expect(second.body).toMatchObject({ prefix: expect.stringMatching(/^prl_/), expires_at: null });
    const keys = await api('GET', `/api/v1/bots/${created.body.id}/keys`, { token: owner.token });
    expect(keys.body.items).toHaveLength(2);
    // The secret is everything after the prefix; base64url may put `_` anywhere in it.
    expect(JSON.stringify(keys.body)).not.toContain(key.split('_').slice(2).join('_'));
    expect(keys.body.items[0]).toEqual({
      id: created.body.api_key_id,
      prefix: key.split('_').slice(0, 2).join('_'),
      created_at: expect.any(String),
      last_used_at: expect.any(String),
      expires_at: null,
      revoked: false,
    });

    expect(
      (await api('DELETE', `/api/v1/bots/${created.body.id}/keys/${created.body.api_key_id}`, { token: owner.token }))
        .status,
    ).toBe(204);
    const started = Date.now();
    await eventually(
      async () =>
        (await api('GET', '/api/v1/me', { headers: { 'x-api-key': key } })).status === 401 ? true : undefined,
      5000,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await api('GET', '/api/v1/me', { headers: { 'x-api-key': second.body.api_key } })).status).toBe(200);

    // Deleting the bot disables it and revokes every key.
    expect((await api('DELETE', `/api/v1/bots/${created.body.id}`, { token: owner.token })).status).toBe(204);
    await eventually(
      async () =>
        (await api('GET', '/api/v1/me', { headers: { 'x-api-key': second.body.api_key } })).status === 401
          ? true
          : undefined,
      5000,
    );
    expect((await api('GET', `/api/v1/bots/${created.body.id}`, { token: owner.token })).body.enabled).toBe(false);
  });

  it('refuses strangers as API.md says: 401 without credentials, 403 on admin routes, 404 on what they cannot see', async () => {
    const stranger = await newUser(admin, 'stranger');
    const owner = await newUser(admin, 'owner2');
    const bot = (await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'private' } })).body;
    const g = (await api('POST', '/api/v1/groups', { token: admin, body: { name: `g-${Date.now().toString(36)}` } }))
      .body;
    const role = (await api('POST', '/api/v1/roles', { token: admin, body: { name: `r-${Date.now().toString(36)}` } }))
      .body;

    const routes: [string, string, unknown, number][] = [
      ['POST', '/api/v1/users', { username: 'zzz-new', password: 'password-1234' }, 403],
      ['GET', '/api/v1/users', undefined, 403],
      ['PATCH', `/api/v1/users/${owner.id}`, { email: null }, 403],
      ['DELETE', `/api/v1/users/${owner.id}`, undefined, 403],
      ['PUT', `/api/v1/users/${stranger.id}/roles/${role.id}`, undefined, 403],
      ['DELETE', `/api/v1/users/${stranger.id}/roles/${role.id}`, undefined, 403],
      ['POST', '/api/v1/groups', { name: 'mine' }, 403],
      ['GET', '/api/v1/groups', undefined, 403],
      ['PATCH', `/api/v1/groups/${g.id}`, { name: 'mine' }, 403],
      ['DELETE', `/api/v1/groups/${g.id}`, undefined, 403],
      ['GET', `/api/v1/groups/${g.id}/members`, undefined, 403],
      ['PUT', `/api/v1/groups/${g.id}/members/${stranger.id}`, {}, 403],
      ['DELETE', `/api/v1/groups/${g.id}/members/${owner.id}`, undefined, 403],
      ['POST', '/api/v1/roles', { name: 'mine' }, 403],
      ['GET', '/api/v1/roles', undefined, 403],
      ['GET', `/api/v1/roles/${role.id}/grants`, undefined, 403],
      ['PUT', `/api/v1/roles/${role.id}/grants`, { grants: [] }, 403],
      ['GET', `/api/v1/bots/${bot.id}`, undefined, 404],
      ['PATCH', `/api/v1/bots/${bot.id}`, { name: 'mine' }, 404],
      ['DELETE', `/api/v1/bots/${bot.id}`, undefined, 404],
      ['POST', `/api/v1/bots/${bot.id}/keys`, {}, 404],
      ['GET', `/api/v1/bots/${bot.id}/keys`, undefined, 404],
      ['DELETE', `/api/v1/bots/${bot.id}/keys/${bot.api_key_id}`, undefined, 404],
    ];
    const expired = await expiredToken(owner.id);
    for (const [method, path, body, strangerStatus] of routes) {
      const label = `${method} ${path}`;
      expect([label, (await api(method, path, { body })).status]).toEqual([label, 401]);
      expect([label, (await api(method, path, { body, token: expired })).status]).toEqual([label, 401]);
      expect([
        label,
        (await api(method, path, { body, headers: { 'x-api-key': 'prl_deadbeef_nope' } })).status,
      ]).toEqual([label, 401]);
      expect([label, (await api(method, path, { body, token: stranger.token })).status]).toEqual([
        label,
        strangerStatus,
      ]);
    }
    const expiredAnswer = await api('GET', '/api/v1/me', { token: expired });
    expect(expiredAnswer.body.detail).toContain('expired');
    // The bot itself is still there for its owner.
    expect((await api('GET', `/api/v1/bots/${bot.id}`, { token: owner.token })).status).toBe(200);
    expect((await api('GET', '/api/v1/bots', { token: stranger.token })).body.items).toEqual([]);
    expect((await api('GET', `/api/v1/bots/${uuid}`, { token: admin })).status).toBe(404);
  });

  it('changes a password and deletes a user by anonymising them', async () => {
    const u = await newUser(admin, 'pw');
    const wrong = await api('PUT', '/api/v1/me/password', {
      token: u.token,
      body: { current_password: 'nope-nope', new_password: 'another-secret-1' },
    });
    expect(wrong.status).toBe(400);
    const ok = await api('PUT', '/api/v1/me/password', {
      token: u.token,
      body: { current_password: 'correct-horse-battery', new_password: 'another-secret-1' },
    });
    expect(ok.status).toBe(204);
    expect(
      (await api('POST', '/api/v1/auth/login', { body: { username: u.username, password: 'correct-horse-battery' } }))
        .status,
    ).toBe(401);
    const token = await login(u.username, 'another-secret-1');
    const s = (await api('POST', '/api/v1/sessions', { token, body: { title: 'kept' } })).body;

    expect((await api('DELETE', `/api/v1/users/${u.id}`, { token: admin })).status).toBe(204);
    await eventually(async () => ((await api('GET', '/api/v1/me', { token })).status === 401 ? true : undefined), 5000);
    const listed = await api('GET', `/api/v1/users?q=${u.id}`, { token: admin });
    expect(listed.body.items).toEqual([
      expect.objectContaining({ id: u.id, enabled: false, email: null, username: `deleted-${u.id}` }),
    ]);
    expect((await api('GET', `/api/v1/sessions/${s.id}`, { token: admin })).status).toBe(200);
  });

  it('throttles repeated failed logins with 429 and Retry-After', async () => {
    const u = await newUser(admin, 'throttled');
    for (let i = 0; i < 10; i++) {
      const failed = await api('POST', '/api/v1/auth/login', {
        body: { username: u.username, password: 'wrong-wrong' },
      });
      expect(failed.status).toBe(401);
    }
    const blocked = await api('POST', '/api/v1/auth/login', {
      body: { username: u.username, password: 'correct-horse-battery' },
    });
    expect(blocked.status).toBe(429);
    expect(blocked.body.code).toBe('RATE_LIMITED');
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('answers a user over the rate limit with 429 and Retry-After', async () => {
    const u = await newUser(admin, 'hasty');
    let answer = await api('GET', '/api/v1/me', { token: u.token });
    for (let i = 0; i < 700 && answer.status === 200; i++) answer = await api('GET', '/api/v1/me', { token: u.token });
    expect(answer.status).toBe(429);
    expect(answer.body.code).toBe('RATE_LIMITED');
    const retryAfter = Number(answer.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Another user is not affected.
    expect((await api('GET', '/api/v1/me', { token: admin })).status).toBe(200);
  });
});

import { adminLogin, api, eventually, login, newUser } from '../support/http';

describe('auth and users (e2e)', () => {
  let admin: string;

  beforeAll(async () => {
    admin = await adminLogin();
  });

  it('logs in the bootstrap administrator with a signed token and a refresh token', async () => {
    const res = await api('POST', '/api/v1/auth/login', {
      body: { username: process.env.E2E_ADMIN_USERNAME, password: process.env.E2E_ADMIN_PASSWORD },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: 'Bearer', expires_in: 900 });
    expect(res.body.access_token.split('.')).toHaveLength(3);
    expect(res.body.refresh_token.length).toBeGreaterThanOrEqual(40);
    const me = await api('GET', '/api/v1/me', { token: res.body.access_token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ type: 'user', username: 'admin', is_admin: true, roles: [] });
    expect(me.body.groups).toEqual([{ id: expect.any(String), name: 'default', is_group_admin: false }]);
  });

  it('answers a wrong password with 401 problem+json', async () => {
    const res = await api('POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'not-the-password' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body).toMatchObject({ status: 401, code: 'INVALID_CREDENTIALS', retryable: false });
    expect(res.body.type).toEqual(expect.any(String));
    expect(res.body.title).toEqual(expect.any(String));
  });

  it('refuses missing, malformed and tampered tokens with 401', async () => {
    expect((await api('GET', '/api/v1/me')).status).toBe(401);
    expect((await api('GET', '/api/v1/me', { headers: { authorization: 'Basic abc' } })).status).toBe(401);
    expect((await api('GET', '/api/v1/me', { token: 'a.b.c' })).status).toBe(401);
    const [header, payload, signature] = admin.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: '01900000-0000-7000-8000-000000000000' })).toString(
      'base64url',
    );
    const res = await api('GET', '/api/v1/me', { token: `${header}.${forged}.${signature}` });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('UNAUTHENTICATED');
  });

  it('creates users (admin only), never showing a password, and refuses a taken username with 409', async () => {
    const username = `alice-${Date.now().toString(36)}`;
    const created = await api('POST', '/api/v1/users', {
      token: admin,
      body: { username, password: 'long-enough-pw', email: 'alice@example.com' },
    });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({
      id: expect.any(String),
      username,
      email: 'alice@example.com',
      enabled: true,
      is_admin: false,
      created_at: expect.any(String),
    });
    const again = await api('POST', '/api/v1/users', { token: admin, body: { username, password: 'long-enough-pw' } });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('USERNAME_TAKEN');

    const alice = await login(username, 'long-enough-pw');
    const denied = await api('POST', '/api/v1/users', {
      token: alice,
      body: { username: `x${username}`, password: 'long-enough-pw' },
    });
    expect(denied.status).toBe(403);
    expect((await api('GET', '/api/v1/users', { token: alice })).status).toBe(403);
    expect(
      (await api('PATCH', `/api/v1/users/${created.body.id}`, { token: alice, body: { email: null } })).status,
    ).toBe(403);
  });

  it('validates user bodies field by field', async () => {
    const res = await api('POST', '/api/v1/users', {
      token: admin,
      body: { username: 'x', password: 'short', extra: 1 },
    });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
    const fields = res.body.errors.map((e: { field: string }) => e.field).sort();
    expect(fields).toEqual(['extra', 'password', 'username']);
  });

  it('lists users with a cursor and with page/size', async () => {
    for (let i = 0; i < 3; i++) await newUser(admin, 'lister');
    const first = await api('GET', '/api/v1/users?limit=2&q=lister', { token: admin });
    expect(first.status).toBe(200);
    expect(first.body.items).toHaveLength(2);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await api('GET', `/api/v1/users?limit=2&q=lister&cursor=${first.body.next_cursor}`, {
      token: admin,
    });
    expect(second.body.items.length).toBeGreaterThanOrEqual(1);
    const ids = [...first.body.items, ...second.body.items].map((u: { id: string }) => u.id);
    expect(new Set(ids).size).toBe(ids.length);
    const paged = await api('GET', '/api/v1/users?page=1&size=2&q=lister', { token: admin });
    expect(paged.body).toMatchObject({ page: 1, size: 2, total: expect.any(Number) });
    expect(paged.body.total).toBeGreaterThanOrEqual(3);
    expect((await api('GET', '/api/v1/users?limit=0', { token: admin })).status).toBe(400);
    expect((await api('GET', '/api/v1/users?limit=201', { token: admin })).status).toBe(400);
    const garbage = await api('GET', '/api/v1/users?cursor=garbage', { token: admin });
    expect(garbage.status).toBe(400);
    expect(garbage.body).toMatchObject({ code: 'INVALID_CURSOR', errors: [{ field: 'query.cursor' }] });
    const otherFilter = await api('GET', `/api/v1/users?limit=2&q=list&cursor=${first.body.next_cursor}`, {
      token: admin,
    });
    expect(otherFilter.body.code).toBe('INVALID_CURSOR');
  });

  it('stops a disabled user at login and refuses their live token within seconds', async () => {
    const bob = await newUser(admin, 'bob');
    expect((await api('GET', '/api/v1/me', { token: bob.token })).status).toBe(200);
    const patched = await api('PATCH', `/api/v1/users/${bob.id}`, { token: admin, body: { enabled: false } });
    expect(patched.status).toBe(200);
    expect(patched.body.enabled).toBe(false);
    await eventually(
      async () => ((await api('GET', '/api/v1/me', { token: bob.token })).status === 401 ? true : undefined),
      5000,
    );
    const relog = await api('POST', '/api/v1/auth/login', {
      body: { username: bob.username, password: 'correct-horse-battery' },
    });
    expect(relog.status).toBe(401);
  });

  it('rotates refresh tokens: the old one stops working, logout revokes', async () => {
    const u = await newUser(admin, 'refresher');
    const first = await api('POST', '/api/v1/auth/login', {
      body: { username: u.username, password: 'correct-horse-battery' },
    });
    const rotated = await api('POST', '/api/v1/auth/refresh', { body: { refresh_token: first.body.refresh_token } });
    expect(rotated.status).toBe(200);
    expect(rotated.body.refresh_token).not.toBe(first.body.refresh_token);
    expect((await api('GET', '/api/v1/me', { token: rotated.body.access_token })).status).toBe(200);
    const reused = await api('POST', '/api/v1/auth/refresh', { body: { refresh_token: first.body.refresh_token } });
    expect(reused.status).toBe(401);
    expect(
      (await api('POST', '/api/v1/auth/logout', { body: { refresh_token: rotated.body.refresh_token } })).status,
    ).toBe(204);
    expect(
      (await api('POST', '/api/v1/auth/refresh', { body: { refresh_token: rotated.body.refresh_token } })).status,
    ).toBe(401);
  });
});

import { adminLogin, api, newUser } from '../support/http';

describe('sessions (e2e)', () => {
  let admin: string;
  let owner: { id: string; token: string };
  let outsider: { id: string; token: string };

  beforeAll(async () => {
    admin = await adminLogin();
    owner = await newUser(admin, 'owner');
    outsider = await newUser(admin, 'outsider');
  });

  it('creates, reads, lists, updates and deletes a session', async () => {
    const created = await api('POST', '/api/v1/sessions', {
      token: owner.token,
      body: { title: 'Trip to Kyoto', metadata: { channel: 'web' }, state: { step: 1 } },
    });
    expect(created.status).toBe(201);
    const s = created.body;
    expect(s).toMatchObject({
      user_id: owner.id,
      bot_id: null,
      title: 'Trip to Kyoto',
      status: 'active',
      metadata: { channel: 'web' },
      state: { step: 1 },
      message_count: 0,
      like_count: 0,
      dislike_count: 0,
      copied_count: 0,
      sensitive_status: 'unchecked',
      last_message_at: null,
    });
    expect(Date.parse(s.created_at)).not.toBeNaN();
    // The owner's groups at creation: every user is in the default group.
    const me = await api('GET', '/api/v1/me', { token: owner.token });
    expect(s.group_ids).toEqual(me.body.groups.map((g: { id: string }) => g.id));
    expect(s.group_ids).toHaveLength(1);

    const read = await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token });
    expect(read.status).toBe(200);
    expect(read.body).toEqual(s);

    const listed = await api('GET', '/api/v1/sessions', { token: owner.token });
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((x: { id: string }) => x.id)).toContain(s.id);

    const patched = await api('PATCH', `/api/v1/sessions/${s.id}`, {
      token: owner.token,
      body: { title: 'Trip to Osaka', status: 'archived', state: { step: 2 } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      title: 'Trip to Osaka',
      status: 'archived',
      state: { step: 2 },
      metadata: { channel: 'web' },
    });

    const archived = await api('GET', '/api/v1/sessions?status=archived', { token: owner.token });
    expect(archived.body.items.map((x: { id: string }) => x.id)).toEqual([s.id]);

    expect((await api('DELETE', `/api/v1/sessions/${s.id}`, { token: owner.token })).status).toBe(204);
    expect((await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token })).status).toBe(404);
    expect((await api('DELETE', `/api/v1/sessions/${s.id}`, { token: owner.token })).status).toBe(404);
  });

  it('hides a session from an outsider with 404 and shows it to an admin', async () => {
    const s = (await api('POST', '/api/v1/sessions', { token: owner.token, body: { title: 'private' } })).body;
    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { title: 'mine now' }],
      ['DELETE', undefined],
    ] as const) {
      const res = await api(method, `/api/v1/sessions/${s.id}`, { token: outsider.token, body });
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    }
    const outsiderList = await api('GET', '/api/v1/sessions', { token: outsider.token });
    expect(outsiderList.body.items.map((x: { id: string }) => x.id)).not.toContain(s.id);
    const forbiddenFilter = await api('GET', `/api/v1/sessions?user_id=${owner.id}`, { token: outsider.token });
    expect(forbiddenFilter.status).toBe(403);

    expect((await api('GET', `/api/v1/sessions/${s.id}`, { token: admin })).status).toBe(200);
    const adminView = await api('GET', `/api/v1/sessions?user_id=${owner.id}`, { token: admin });
    expect(adminView.body.items.map((x: { id: string }) => x.id)).toContain(s.id);
    expect((await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token })).body.title).toBe('private');
  });

  it('pages newest activity first with a cursor and with page/size', async () => {
    const u = await newUser(admin, 'pager');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await api('POST', '/api/v1/sessions', { token: u.token, body: { title: `s${i}` } })).body.id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const page = await api('GET', `/api/v1/sessions${q}`, { token: u.token });
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((x: { id: string }) => x.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());
    // A cursor is the caller's and its filters': another caller's or another filter's is a 400.
    const first = await api('GET', '/api/v1/sessions?limit=2', { token: u.token });
    for (const [query, token] of [
      [`limit=2&cursor=${first.body.next_cursor}`, outsider.token],
      [`limit=2&status=active&cursor=${first.body.next_cursor}`, u.token],
    ] as const) {
      const refused = await api('GET', `/api/v1/sessions?${query}`, { token });
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ code: 'INVALID_CURSOR', errors: [{ field: 'query.cursor' }] });
    }

    // Updating the oldest makes it the newest activity.
    await api('PATCH', `/api/v1/sessions/${ids[0]}`, { token: u.token, body: { title: 'touched' } });
    const offset = await api('GET', '/api/v1/sessions?page=1&size=3', { token: u.token });
    expect(offset.body).toMatchObject({ total: 5, page: 1, size: 3 });
    expect(offset.body.items[0].id).toBe(ids[0]);
    const q = await api('GET', '/api/v1/sessions?q=touch', { token: u.token });
    expect(q.body.items.map((x: { id: string }) => x.id)).toEqual([ids[0]]);
  });

  it('answers bad bodies and queries with 400 and field errors', async () => {
    const bad = await api('POST', '/api/v1/sessions', {
      token: owner.token,
      body: { title: 42, metadata: 'x', nope: true },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe('VALIDATION_FAILED');
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['metadata', 'nope', 'title']);

    const notJson = await api('POST', '/api/v1/sessions', { token: owner.token, raw: '{"title":' });
    expect(notJson.status).toBe(400);
    expect(notJson.headers.get('content-type')).toContain('application/problem+json');

    expect(
      (await api('PATCH', '/api/v1/sessions/not-a-uuid', { token: owner.token, body: { title: 'x' } })).status,
    ).toBe(400);
    expect((await api('GET', '/api/v1/sessions?limit=500', { token: owner.token })).status).toBe(400);
    expect((await api('GET', '/api/v1/sessions?status=deleted', { token: owner.token })).status).toBe(400);
    const empty = await api('PATCH', `/api/v1/sessions/01900000-0000-7000-8000-000000000000`, {
      token: owner.token,
      body: {},
    });
    expect(empty.status).toBe(400);
  });

  it('refuses a body over 1 MiB with 413', async () => {
    const res = await api('POST', '/api/v1/sessions', {
      token: owner.token,
      body: { title: 'big', metadata: { blob: 'x'.repeat(1024 * 1024 + 10) } },
    });
    expect(res.status).toBe(413);
    expect(res.body.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('refuses every session route without credentials', async () => {
    const id = '01900000-0000-7000-8000-000000000000';
    for (const [method, path] of [
      ['POST', '/api/v1/sessions'],
      ['GET', '/api/v1/sessions'],
      ['GET', `/api/v1/sessions/${id}`],
      ['PATCH', `/api/v1/sessions/${id}`],
      ['DELETE', `/api/v1/sessions/${id}`],
      ['GET', '/api/v1/users'],
    ]) {
      const res = await api(method, path, {
        body: method === 'POST' || method === 'PATCH' ? { title: 't' } : undefined,
      });
      expect(res.status).toBe(401);
    }
  });
});

import { adminLogin, api, eventually, gatewayUrl, newUser } from '../support/http';
import { openStream } from '../support/sse';

/** Bounded work on the request path: live streams per caller, streams that outlive a right, summary ranges. */
describe('limits (e2e)', () => {
  let admin: string;

  beforeAll(async () => {
    admin = await adminLogin();
  });

  const newSession = async (token: string, title: string) => {
    const res = await api('POST', '/api/v1/sessions', { token, body: { title } });
    expect(res.status).toBe(201);
    return res.body as { id: string };
  };

  /** A stream request that is expected to be refused: its problem, without waiting on an open stream. */
  const refusedStream = async (path: string) => {
    const res = await fetch(`${gatewayUrl()}${path}`, {
      headers: { accept: 'text/event-stream' },
      signal: AbortSignal.timeout(20_000),
    });
    if (res.status === 200) {
      await res.body?.cancel();
      return { status: 200, headers: res.headers, body: undefined };
    }
    return { status: res.status, headers: res.headers, body: await res.json() };
  };

  it('lets one user hold 16 live streams at once; the 17th answers 429 until one closes', async () => {
    const user = await newUser(admin, 'streamer');
    const s = await newSession(user.token, 'watched');
    const path = `/api/v1/sessions/${s.id}/stream?access_token=${user.token}`;
    const streams = [];
    try {
      for (let i = 0; i < 16; i++) {
        const stream = openStream(path);
        streams.push(stream);
        await stream.ready;
        expect(stream.status()).toBe(200);
      }
      const refused = await refusedStream(path);
      expect(refused.status).toBe(429);
      expect(refused.body).toMatchObject({ code: 'TOO_MANY_STREAMS', status: 429, retryable: true });
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
      // Someone else still gets a stream.
      const other = await newUser(admin, 'bystander');
      const theirs = await newSession(other.token, 'theirs');
      const bystander = openStream(`/api/v1/sessions/${theirs.id}/stream?access_token=${other.token}`);
      streams.push(bystander);
      await bystander.ready;
      expect(bystander.status()).toBe(200);

      // Closing one gives its place back.
      streams[0].close();
      const again = await eventually(async () => {
        const next = openStream(path);
        await next.ready;
        if (next.status() === 200) return next;
        next.close();
        return undefined;
      });
      streams.push(again);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it('gives an export its place back once it is sent, so exports one after another never hit the cap', async () => {
    const user = await newUser(admin, 'exporter');
    const s = await newSession(user.token, 'exported');
    for (let i = 0; i < 4; i++) {
      const res = await api('GET', `/api/v1/sessions/${s.id}/export`, { token: user.token });
      expect(res.status).toBe(200);
    }
  });

  it('ends a live stream once its user is disabled', async () => {
    const user = await newUser(admin, 'doomed');
    const s = await newSession(user.token, 'last words');
    const stream = openStream(`/api/v1/sessions/${s.id}/stream?access_token=${user.token}`);
    try {
      await stream.ready;
      expect(stream.status()).toBe(200);
      const patched = await api('PATCH', `/api/v1/users/${user.id}`, { token: admin, body: { enabled: false } });
      expect(patched.status).toBe(200);
      await eventually(async () => (stream.ended() ? true : undefined), 20_000);
      expect(stream.events.at(-1)).toMatchObject({ event: 'closed' });
      expect(JSON.parse(stream.events.at(-1)?.data ?? '{}')).toMatchObject({ code: 'UNAUTHENTICATED' });
    } finally {
      stream.close();
    }
  });

  it('ends a live stream once the read right on its session is taken away', async () => {
    const owner = await newUser(admin, 'owner');
    const reader = await newUser(admin, 'reader');
    const s = await newSession(owner.token, 'shared for a while');
    const role = await api('POST', '/api/v1/roles', { token: admin, body: { name: `watchers-${s.id}` } });
    expect(role.status).toBe(201);
    const grants = { grants: [{ resource_type: 'session', resource_id: s.id, permission: 'read' }] };
    expect((await api('PUT', `/api/v1/roles/${role.body.id}/grants`, { token: admin, body: grants })).status).toBe(200);
    expect((await api('PUT', `/api/v1/users/${reader.id}/roles/${role.body.id}`, { token: admin })).status).toBe(200);

    const stream = openStream(`/api/v1/sessions/${s.id}/stream`, { authorization: `Bearer ${reader.token}` });
    const owners = openStream(`/api/v1/sessions/${s.id}/stream?access_token=${owner.token}`);
    try {
      await Promise.all([stream.ready, owners.ready]);
      expect([stream.status(), owners.status()]).toEqual([200, 200]);
      const revoked = await api('DELETE', `/api/v1/users/${reader.id}/roles/${role.body.id}`, { token: admin });
      expect(revoked.status).toBe(204);
      await eventually(async () => (stream.ended() ? true : undefined), 20_000);
      expect(JSON.parse(stream.events.at(-1)?.data ?? '{}')).toMatchObject({ code: 'NOT_FOUND' });
      // The owner's stream, checked as often, stays open and keeps delivering.
      await api('POST', `/api/v1/sessions/${s.id}/messages`, {
        token: owner.token,
        body: { role: 'user', content: 'still here' },
      });
      await eventually(async () => (owners.events.some((e) => e.event === 'message') ? true : undefined));
      expect(owners.ended()).toBe(false);
    } finally {
      stream.close();
      owners.close();
    }
  });

  it('bounds a usage summary to 400 days (31 grouped by hour) with 400 RANGE_TOO_LARGE', async () => {
    const DAY = 86_400_000;
    const to = Date.parse('2026-11-24T00:00:00Z');
    const summary = (fromMs: number, toMs: number | undefined, groupBy: string, tz = 'Asia/Kolkata') =>
      api(
        'GET',
        `/api/v1/usage/summary?${new URLSearchParams({
          from: new Date(fromMs).toISOString(),
          ...(toMs !== undefined ? { to: new Date(toMs).toISOString() } : {}),
          group_by: groupBy,
          tz,
        })}`,
        { token: admin },
      );
    const ok = await summary(to - 400 * DAY, to, 'day');
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ from: new Date(to - 400 * DAY).toISOString(), tz: 'Asia/Kolkata' });
    expect((await summary(to - 31 * DAY, to, 'hour,model')).status).toBe(200);

    for (const [from, groupBy] of [
      [to - 400 * DAY - 1000, 'day'],
      [to - 31 * DAY - 1000, 'hour'],
      [Date.parse('1950-01-01T00:00:00Z'), 'day'],
    ] as const) {
      const refused = await summary(from, to, groupBy);
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({
        code: 'RANGE_TOO_LARGE',
        retryable: false,
        errors: [{ field: 'query.from', message: expect.stringContaining('days') }],
      });
    }
    // `to` defaults to now.
    expect((await summary(Date.now() - 500 * DAY, undefined, 'model')).body.code).toBe('RANGE_TOO_LARGE');
    const backwards = await summary(to, to - DAY, 'day');
    expect(backwards.status).toBe(400);
    expect(backwards.body.code).toBe('VALIDATION_FAILED');
  });
});

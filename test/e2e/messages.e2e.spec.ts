import { Client } from 'pg';
import { DATABASE_URL } from '../support/stack';
import { adminLogin, api, editedCursor, eventually, expectCursorsRefused, newUser } from '../support/http';
import { openStream } from '../support/sse';

async function messageRows(sessionId: string): Promise<number> {
  const pg = new Client({ connectionString: DATABASE_URL });
  await pg.connect();
  try {
    const { rows } = await pg.query(
      `select count(*)::int as n from "${process.env.E2E_RUN_ID}_message".messages where session_id = $1`,
      [sessionId],
    );
    return rows[0].n;
  } finally {
    await pg.end();
  }
}

describe('messages (e2e)', () => {
  let admin: string;
  let owner: { id: string; token: string };
  let outsider: { id: string; token: string };

  const newSession = async (title = 'chat', token = owner.token) =>
    (await api('POST', '/api/v1/sessions', { token, body: { title } })).body as { id: string };
  const append = (sessionId: string, body: unknown, token = owner.token) =>
    api('POST', `/api/v1/sessions/${sessionId}/messages`, { token, body });

  beforeAll(async () => {
    admin = await adminLogin();
    owner = await newUser(admin, 'talker');
    outsider = await newUser(admin, 'lurker');
  });

  it("appends messages with gapless seq, lists them both ways, and keeps the session's counters", async () => {
    const s = await newSession();
    const first = await append(s.id, { role: 'user', content: 'Hello there', tokens: 3, metadata: { lang: 'en' } });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({
      session_id: s.id,
      seq: 1,
      role: 'user',
      content: 'Hello there',
      tokens: 3,
      metadata: { lang: 'en' },
      media: [],
      feedback: null,
      copied: false,
      sensitive_status: 'unchecked',
      client_message_id: null,
    });
    await append(s.id, {
      role: 'assistant',
      content: 'Hi! How can I help?',
      media: [{ type: 'image', url: 'https://x/y.png' }],
    });
    await append(s.id, { role: 'user', content: 'Tell me a joke' });

    const asc = await api('GET', `/api/v1/sessions/${s.id}/messages?limit=2`, { token: owner.token });
    expect(asc.body.items.map((m: { seq: number }) => m.seq)).toEqual([1, 2]);
    const rest = await api('GET', `/api/v1/sessions/${s.id}/messages?limit=2&cursor=${asc.body.next_cursor}`, {
      token: owner.token,
    });
    expect(rest.body).toMatchObject({ next_cursor: null });
    expect(rest.body.items.map((m: { seq: number }) => m.seq)).toEqual([3]);
    const desc = await api('GET', `/api/v1/sessions/${s.id}/messages?order=desc&page=1&size=2`, { token: owner.token });
    expect(desc.body).toMatchObject({ total: 3, page: 1, size: 2 });
    expect(desc.body.items.map((m: { seq: number }) => m.seq)).toEqual([3, 2]);
    const latest = await api('GET', `/api/v1/sessions/${s.id}/messages/latest`, { token: owner.token });
    expect(latest.body.seq).toBe(3);

    const counted = await eventually(async () => {
      const r = await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token });
      return r.body.message_count === 3 ? r.body : undefined;
    });
    expect(counted.last_message_at).toBe(latest.body.created_at);

    const withIncludes = await api('GET', `/api/v1/sessions/${s.id}?include=messages,usage`, { token: owner.token });
    expect(withIncludes.body.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2, 3]);
    expect(withIncludes.body.usage).toEqual({
      requests: 0,
      input_tokens: 0,
      output_tokens: 0,
      total_tokens: 0,
      cost: null,
      currency: null,
      costs: [],
      unpriced_requests: 0,
    });
    expect((await api('GET', `/api/v1/sessions/${s.id}?include=everything`, { token: owner.token })).status).toBe(400);
  });

  it('gives 200 concurrent appends to one session seq 1..200 exactly', async () => {
    const s = await newSession('busy');
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        append(s.id, { role: i % 2 ? 'assistant' : 'user', content: `message ${i}` }),
      ),
    );
    expect(answers.every((a) => a.status === 201)).toBe(true);
    expect(answers.map((a) => a.body.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const all = await api('GET', `/api/v1/sessions/${s.id}/messages?limit=200`, { token: owner.token });
    expect(all.body.items.map((m: { seq: number }) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('returns the first message for a retried client_message_id, whatever the new body says', async () => {
    const s = await newSession();
    const first = await append(s.id, { role: 'user', content: 'once', client_message_id: 'c-1' });
    expect(first.status).toBe(201);
    const again = await append(s.id, { role: 'assistant', content: 'twice?', client_message_id: 'c-1' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    const concurrent = await Promise.all(
      [1, 2, 3].map(() => append(s.id, { role: 'user', content: 'race', client_message_id: 'c-2' })),
    );
    expect(new Set(concurrent.map((a) => a.body.id)).size).toBe(1);
    expect(concurrent.filter((a) => a.status === 201)).toHaveLength(1);
    expect(await messageRows(s.id)).toBe(2);
  });

  it('appends a batch all or none', async () => {
    const s = await newSession();
    const bad = await api('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
      token: owner.token,
      body: {
        messages: [
          { role: 'user', content: 'ok' },
          { role: 'robot', content: 'bad role' },
        ],
      },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe('messages.1.role');
    expect(await messageRows(s.id)).toBe(0);
    const good = await api('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
      token: owner.token,
      body: {
        messages: Array.from({ length: 50 }, (_, i) => ({
          role: 'user',
          content: `m${i}`,
          client_message_id: `b-${i}`,
        })),
      },
    });
    expect(good.status).toBe(201);
    expect(good.body.items.map((m: { seq: number }) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const retried = await api('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
      token: owner.token,
      body: {
        messages: [
          { role: 'user', content: 'm0', client_message_id: 'b-0' },
          { role: 'user', content: 'new' },
        ],
      },
    });
    expect(retried.body.items.map((m: { seq: number }) => m.seq)).toEqual([1, 51]);
    const tooMany = await api('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
      token: owner.token,
      body: { messages: Array.from({ length: 501 }, () => ({ role: 'user', content: 'x' })) },
    });
    expect(tooMany.status).toBe(400);
    const tooBig = await api('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
      token: owner.token,
      body: { messages: Array.from({ length: 4 }, () => ({ role: 'user', content: 'x'.repeat(240 * 1024) })) },
    });
    expect(tooBig.status).toBe(413);
    expect(await messageRows(s.id)).toBe(51);
  });

  it('validates roles and sizes, and refuses archived, deleted and unreadable sessions', async () => {
    const s = await newSession();
    expect((await append(s.id, { role: 'robot', content: 'x' })).status).toBe(400);
    expect((await append(s.id, { role: 'user', content: 'x', tokens: -1 })).status).toBe(400);
    expect((await append(s.id, { role: 'user', content: 'x'.repeat(256 * 1024 + 1) })).status).toBe(413);
    expect((await append(s.id, { role: 'user', content: 'hi' }, outsider.token)).status).toBe(404);
    expect((await api('GET', `/api/v1/sessions/${s.id}/messages`, { token: outsider.token })).status).toBe(404);
    await api('PATCH', `/api/v1/sessions/${s.id}`, { token: owner.token, body: { status: 'archived' } });
    const archived = await append(s.id, { role: 'user', content: 'late' });
    expect(archived.status).toBe(409);
    await api('DELETE', `/api/v1/sessions/${s.id}`, { token: owner.token });
    expect((await append(s.id, { role: 'user', content: 'gone' })).status).toBe(404);
    expect((await append('01900000-0000-7000-8000-000000000000', { role: 'user', content: 'x' })).status).toBe(404);
  });

  it('keeps feedback counters and the rolled-up sensitive status on the session', async () => {
    const s = await newSession();
    const a = (await append(s.id, { role: 'assistant', content: 'one' })).body;
    const b = (await append(s.id, { role: 'assistant', content: 'two' })).body;
    const liked = await api('PUT', `/api/v1/messages/${a.id}/feedback`, {
      token: owner.token,
      body: { feedback: 'like', copied: true },
    });
    expect(liked.status).toBe(200);
    expect(liked.body).toMatchObject({ feedback: 'like', copied: true });
    await api('PUT', `/api/v1/messages/${b.id}/feedback`, { token: owner.token, body: { feedback: 'dislike' } });
    await api('PUT', `/api/v1/messages/${b.id}/feedback`, { token: owner.token, body: { feedback: 'like' } });
    await api('PUT', `/api/v1/messages/${a.id}/feedback`, { token: owner.token, body: { feedback: null } });
    expect(
      (await api('PUT', `/api/v1/messages/${a.id}/feedback`, { token: outsider.token, body: { feedback: 'like' } }))
        .status,
    ).toBe(404);

    await eventually(async () => {
      const r = (await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token })).body;
      return r.like_count === 1 && r.dislike_count === 0 && r.copied_count === 1 ? true : undefined;
    });
    const liked2 = await api('GET', `/api/v1/sessions?feedback=like`, { token: owner.token });
    expect(liked2.body.items.map((x: { id: string }) => x.id)).toContain(s.id);

    expect(
      (await api('PATCH', `/api/v1/messages/${a.id}`, { token: owner.token, body: { sensitive_status: 'pass' } }))
        .status,
    ).toBe(403);
    await api('PATCH', `/api/v1/messages/${a.id}`, { token: admin, body: { sensitive_status: 'pass' } });
    await api('PATCH', `/api/v1/messages/${b.id}`, { token: admin, body: { sensitive_status: 'pass' } });
    await eventually(async () =>
      (await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token })).body.sensitive_status === 'pass'
        ? true
        : undefined,
    );
    await api('PATCH', `/api/v1/messages/${b.id}`, { token: admin, body: { sensitive_status: 'violation' } });
    await eventually(async () =>
      (await api('GET', `/api/v1/sessions/${s.id}`, { token: owner.token })).body.sensitive_status === 'violation'
        ? true
        : undefined,
    );
    const flagged = await api('GET', `/api/v1/sessions?sensitive_status=violation`, { token: owner.token });
    expect(flagged.body.items.map((x: { id: string }) => x.id)).toEqual([s.id]);
  });

  it('searches English words and Chinese substrings, only in sessions the caller may read', async () => {
    const mine = await newSession('search mine');
    const theirs = await newSession('search theirs', outsider.token);
    await append(mine.id, { role: 'user', content: 'The quick brown fox jumps over the lazy dog' });
    await append(mine.id, { role: 'assistant', content: '我们明天去北京看长城吧' });
    await append(
      theirs.id,
      { role: 'user', content: 'A quick brown fox that is not yours; 北京欢迎你' },
      outsider.token,
    );

    const english = await api('GET', '/api/v1/messages/search?q=brown%20fox', { token: owner.token });
    expect(english.status).toBe(200);
    expect(english.body.items.map((m: { session_id: string }) => m.session_id)).toEqual([mine.id]);
    const chinese = await api('GET', `/api/v1/messages/search?q=${encodeURIComponent('北京')}`, { token: owner.token });
    expect(chinese.body.items).toHaveLength(1);
    expect(chinese.body.items[0]).toMatchObject({ session_id: mine.id, content: '我们明天去北京看长城吧' });
    const theirsSearch = await api('GET', `/api/v1/messages/search?q=${encodeURIComponent('北京')}`, {
      token: outsider.token,
    });
    expect(theirsSearch.body.items.map((m: { session_id: string }) => m.session_id)).toEqual([theirs.id]);
    const everything = await api('GET', `/api/v1/messages/search?q=${encodeURIComponent('北京')}&limit=200`, {
      token: admin,
    });
    expect(everything.body.items.length).toBeGreaterThanOrEqual(2);
    expect((await api('GET', '/api/v1/messages/search?q=a', { token: owner.token })).status).toBe(400);
    expect(
      (await api('GET', `/api/v1/messages/search?q=fox&session_id=${theirs.id}`, { token: owner.token })).status,
    ).toBe(404);
  });

  it('exports a large conversation as JSON and Markdown', async () => {
    const s = await newSession('Long talk');
    for (let b = 0; b < 6; b++) {
      await api('POST', `/api/v1/sessions/${s.id}/messages/batch`, {
        token: owner.token,
        body: {
          messages: Array.from({ length: 500 }, (_, i) => ({ role: 'user', content: `line ${b * 500 + i + 1}` })),
        },
      });
    }
    const json = await api('GET', `/api/v1/sessions/${s.id}/export?format=json`, { token: owner.token });
    expect(json.status).toBe(200);
    expect(json.body.session.id).toBe(s.id);
    expect(json.body.messages).toHaveLength(3000);
    expect(json.body.messages.at(-1)).toMatchObject({ seq: 3000, content: 'line 3000' });
    const md = await api('GET', `/api/v1/sessions/${s.id}/export?format=markdown`, { token: owner.token });
    expect(md.headers.get('content-type')).toContain('text/markdown');
    expect(md.body).toContain('# Long talk');
    expect(md.body).toContain('### 3000. user');
    expect((await api('GET', `/api/v1/sessions/${s.id}/export`, { token: outsider.token })).status).toBe(404);
  });

  it('streams appended messages as server-sent events and resumes after Last-Event-ID', async () => {
    const s = await newSession('live');
    const stream = openStream(`/api/v1/sessions/${s.id}/stream?access_token=${owner.token}`);
    await stream.ready;
    expect(stream.status()).toBe(200);
    await append(s.id, { role: 'user', content: 'first live' });
    await append(s.id, { role: 'assistant', content: 'second live' });
    await eventually(async () => (stream.events.length >= 2 ? true : undefined));
    expect(stream.events.map((e) => [e.id, e.event])).toEqual([
      ['1', 'message'],
      ['2', 'message'],
    ]);
    expect(JSON.parse(stream.events[1].data ?? '{}')).toMatchObject({ seq: 2, content: 'second live' });
    stream.close();

    await append(s.id, { role: 'user', content: 'while away' });
    const resumed = openStream(`/api/v1/sessions/${s.id}/stream`, {
      authorization: `Bearer ${owner.token}`,
      'last-event-id': '2',
    });
    await resumed.ready;
    await append(s.id, { role: 'assistant', content: 'back again' });
    await eventually(async () => (resumed.events.length >= 2 ? true : undefined));
    expect(resumed.events.map((e) => e.id)).toEqual(['3', '4']);
    resumed.close();

    const denied = openStream(`/api/v1/sessions/${s.id}/stream?access_token=${outsider.token}`);
    await denied.ready;
    expect(denied.status()).toBe(404);
    denied.close();
  });

  it("lets a bot append to its own sessions through its key, and to no one else's", async () => {
    const bot = (await api('POST', '/api/v1/bots', { token: owner.token, body: { name: 'writer' } })).body;
    const other = (await api('POST', '/api/v1/bots', { token: outsider.token, body: { name: 'intruder' } })).body;
    const key = { 'x-api-key': bot.api_key as string };
    const s = await api('POST', '/api/v1/sessions', { headers: key, body: { user_id: owner.id, title: 'bot chat' } });
    expect(s.status).toBe(201);
    const appended = await api('POST', `/api/v1/sessions/${s.body.id}/messages`, {
      headers: key,
      body: { role: 'assistant', content: 'Hello from the bot', tokens: 5 },
    });
    expect(appended.status).toBe(201);
    expect(appended.body.seq).toBe(1);
    const listed = await api('GET', `/api/v1/sessions/${s.body.id}/messages`, { token: owner.token });
    expect(listed.body.items.map((m: { content: string }) => m.content)).toEqual(['Hello from the bot']);
    const intruder = await api('POST', `/api/v1/sessions/${s.body.id}/messages`, {
      headers: { 'x-api-key': other.api_key as string },
      body: { role: 'assistant', content: 'not mine' },
    });
    expect(intruder.status).toBe(404);
    expect((await api('DELETE', `/api/v1/sessions/${s.body.id}`, { headers: key })).status).toBe(403);
  });

  it('walks message lists and search with cursors, each item once, and refuses cursors edited or made for another list, filter, order or caller', async () => {
    // A user of its own: the suite's owner has spent much of its minute's requests by now.
    const walker = await newUser(admin, 'walker');
    const word = `quokka${Date.now().toString(36)}`;
    const s = await newSession('cursor walk', walker.token);
    const other = await newSession('cursor walk elsewhere', walker.token);
    for (let i = 1; i <= 5; i++) await append(s.id, { role: 'user', content: `${word} number ${i}` }, walker.token);
    for (let i = 1; i <= 2; i++) {
      await append(other.id, { role: 'assistant', content: `${word} again ${i}` }, walker.token);
    }
    const list = `/api/v1/sessions/${s.id}/messages`;
    const search = `/api/v1/messages/search?q=${word}`;

    const walk = async (path: string) => {
      const items: { id: string; seq: number }[] = [];
      let cursor: string | null = null;
      do {
        const res: { status: number; body: { items: { id: string; seq: number }[]; next_cursor: string | null } } =
          await api('GET', `${path}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: walker.token });
        expect(res.status).toBe(200);
        items.push(...res.body.items);
        cursor = res.body.next_cursor;
      } while (cursor);
      return items;
    };
    expect((await walk(`${list}?order=asc`)).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect((await walk(`${list}?order=desc`)).map((m) => m.seq)).toEqual([5, 4, 3, 2, 1]);
    const hits = (await walk(search)).map((m) => m.id);
    expect(new Set(hits).size).toBe(7);
    expect(hits).toHaveLength(7);

    const firstCursor = async (path: string) =>
      (await api('GET', `${path}${path.includes('?') ? '&' : '?'}limit=2`, { token: walker.token })).body
        .next_cursor as string;
    const asc = await firstCursor(list);
    const desc = await firstCursor(`${list}?order=desc`);
    const found = await firstCursor(search);
    // The values swapped for a position never shown, the MAC kept.
    const moved = (c: string, values: unknown[]) => {
      const [key, , mac] = c.split('.');
      return `${key}.${Buffer.from(JSON.stringify(values)).toString('base64url')}.${mac}`;
    };
    const refused: [string, string, string][] = [
      ['list: edited', `${list}?cursor=${editedCursor(asc)}`, walker.token],
      ['list: moved', `${list}?cursor=${moved(asc, [0])}`, walker.token],
      ['list: unsigned', `${list}?cursor=WyJ4Il0`, walker.token],
      ['list: another order', `${list}?order=desc&cursor=${asc}`, walker.token],
      ['list: desc cursor ascending', `${list}?cursor=${desc}`, walker.token],
      ['list: another session', `/api/v1/sessions/${other.id}/messages?cursor=${asc}`, walker.token],
      ['list: another caller', `${list}?cursor=${asc}`, admin],
      ['search: edited', `${search}&cursor=${editedCursor(found)}`, walker.token],
      ['search: another q', `/api/v1/messages/search?q=${word}%20number&cursor=${found}`, walker.token],
      ['search: another filter', `${search}&session_id=${s.id}&cursor=${found}`, walker.token],
      ['search: another caller', `${search}&cursor=${found}`, admin],
      ['search: a list cursor', `${search}&cursor=${asc}`, walker.token],
    ];
    await expectCursorsRefused(refused);
  });

  it("deletes a session's messages with the session", async () => {
    const leaver = await newUser(admin, 'leaver');
    const s = await newSession('chat', leaver.token);
    await append(s.id, { role: 'user', content: 'soon gone' }, leaver.token);
    expect(await messageRows(s.id)).toBe(1);
    expect((await api('DELETE', `/api/v1/sessions/${s.id}`, { token: leaver.token })).status).toBe(204);
    await eventually(async () => ((await messageRows(s.id)) === 0 ? true : undefined));
  });
});

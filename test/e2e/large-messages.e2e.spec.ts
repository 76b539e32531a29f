import { adminLogin, api, eventually, newUser } from '../support/http';
import { openStream } from '../support/sse';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Message {
  seq: number;
  content: string;
  metadata: Record<string, unknown>;
}

/** Content of exactly `bytes` ASCII bytes that tells its message apart from the others. */
const filler = (label: string, bytes: number, fill = 'x') => `${label}:`.padEnd(bytes, fill);

const bytesOf = (value: unknown) => Buffer.byteLength(typeof value === 'string' ? value : JSON.stringify(value));

describe('large messages (e2e)', () => {
  let token: string;
  let admin: string;

  const newSession = async (title: string, body: Record<string, unknown> = {}) => {
    const res = await api('POST', '/api/v1/sessions', { token, body: { title, ...body } });
    expect(res.status).toBe(201);
    return res.body as { id: string };
  };
  const append = (sessionId: string, body: unknown) =>
    api('POST', `/api/v1/sessions/${sessionId}/messages`, { token, body });

  /** Follows next_cursor from `path` (and `start`) to the end; every page must stay under NATS's 1 MiB. */
  async function walk(path: string, start: string | null = null): Promise<{ items: Message[]; pages: number }> {
    const items: Message[] = [];
    let cursor = start;
    let pages = 0;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const res = await api('GET', cursor ? `${path}${sep}cursor=${cursor}` : path, { token });
      expect(res.status).toBe(200);
      expect(bytesOf(res.body)).toBeLessThan(MiB);
      expect(res.body.items.length).toBeGreaterThan(0);
      items.push(...res.body.items);
      cursor = res.body.next_cursor;
      pages += 1;
    } while (cursor);
    return { items, pages };
  }

  beforeAll(async () => {
    admin = await adminLogin();
    token = (await newUser(admin, 'bulky')).token;
  });

  describe('six messages of 250 KB in one session', () => {
    const contents = Array.from({ length: 6 }, (_, i) => filler(`message ${i + 1}`, 250_000, 'abcdef'[i]));
    let session: { id: string };

    beforeAll(async () => {
      session = await newSession('Six large messages');
      for (const content of contents) expect((await append(session.id, { role: 'user', content })).status).toBe(201);
    });

    it('lists all six whole with a cursor, both ways, on pages under 1 MiB', async () => {
      const asc = await walk(`/api/v1/sessions/${session.id}/messages?limit=200`);
      expect(asc.items.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(asc.items.map((m) => m.content)).toEqual(contents);
      expect(asc.pages).toBeGreaterThan(1);

      const desc = await walk(`/api/v1/sessions/${session.id}/messages?order=desc&limit=50`);
      expect(desc.items.map((m) => m.seq)).toEqual([6, 5, 4, 3, 2, 1]);
      expect(desc.items.map((m) => m.content)).toEqual([...contents].reverse());
    });

    it('cuts a page/size page short by size and offers a cursor to the rest of it', async () => {
      const first = await api('GET', `/api/v1/sessions/${session.id}/messages?page=1&size=6`, { token });
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({ total: 6, page: 1, size: 6 });
      expect(bytesOf(first.body)).toBeLessThan(MiB);
      const shown = first.body.items as Message[];
      expect(shown.length).toBeLessThan(6);
      expect(shown.map((m) => m.seq)).toEqual(Array.from({ length: shown.length }, (_, i) => i + 1));
      expect(typeof first.body.next_cursor).toBe('string');
      const resumed = await api(
        'GET',
        `/api/v1/sessions/${session.id}/messages?limit=${6 - shown.length}&cursor=${first.body.next_cursor}`,
        { token },
      );
      expect(resumed.body.items[0].seq).toBe(shown.length + 1);
      // The cursor is the ascending list's, and the caller's.
      for (const [query, caller] of [
        [`order=desc&cursor=${first.body.next_cursor}`, token],
        [`cursor=${first.body.next_cursor}`, admin],
      ]) {
        const refused = await api('GET', `/api/v1/sessions/${session.id}/messages?${query}`, { token: caller });
        expect(refused.body).toMatchObject({
          status: 400,
          code: 'INVALID_CURSOR',
          errors: [{ field: 'query.cursor' }],
        });
      }

      const whole = await api('GET', `/api/v1/sessions/${session.id}/messages?page=6&size=1`, { token });
      expect(whole.body.items.map((m: Message) => m.content)).toEqual([contents[5]]);
      expect(whole.body).not.toHaveProperty('next_cursor');
    });

    it('includes the newest messages that fit, whole and ascending, with a cursor to the older ones', async () => {
      const res = await api('GET', `/api/v1/sessions/${session.id}?include=messages`, { token });
      expect(res.status).toBe(200);
      expect(bytesOf(res.body)).toBeLessThan(MiB);
      const newest = res.body.messages as Message[];
      expect(newest.length).toBeGreaterThan(0);
      expect(newest.length).toBeLessThan(6);
      const seqs = newest.map((m) => m.seq);
      expect(seqs).toEqual(Array.from({ length: newest.length }, (_, i) => 7 - newest.length + i));
      expect(newest.map((m) => m.content)).toEqual(contents.slice(6 - newest.length));
      expect(typeof res.body.messages_next_cursor).toBe('string');

      const older = await walk(`/api/v1/sessions/${session.id}/messages?order=desc`, res.body.messages_next_cursor);
      expect(older.items.map((m) => m.seq)).toEqual(
        Array.from({ length: 6 - newest.length }, (_, i) => 6 - newest.length - i),
      );
      expect(older.items.map((m) => m.content)).toEqual(contents.slice(0, 6 - newest.length).reverse());
    });

    it('exports all six as JSON and as Markdown', async () => {
      const json = await api('GET', `/api/v1/sessions/${session.id}/export?format=json`, { token });
      expect(json.status).toBe(200);
      expect(json.body.session.id).toBe(session.id);
      expect(json.body.messages.map((m: Message) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(json.body.messages.map((m: Message) => m.content)).toEqual(contents);

      const md = await api('GET', `/api/v1/sessions/${session.id}/export?format=markdown`, { token });
      expect(md.status).toBe(200);
      expect(md.headers.get('content-type')).toContain('text/markdown');
      const text = md.body as string;
      contents.forEach((content, i) => {
        expect(text).toContain(`### ${i + 1}. user`);
        expect(text).toContain(`\n\n${content}\n\n`);
      });
    });

    it('finds all six by search, page by page', async () => {
      const found = await walk(`/api/v1/messages/search?q=message&session_id=${session.id}&limit=200`);
      expect(found.items.map((m) => m.seq).sort()).toEqual([1, 2, 3, 4, 5, 6]);
      expect(found.pages).toBeGreaterThan(1);
      for (const m of found.items) expect(m.content).toBe(contents[m.seq - 1]);
    });

    it('replays all six on a stream resuming from Last-Event-ID 0', async () => {
      const stream = openStream(`/api/v1/sessions/${session.id}/stream`, {
        authorization: `Bearer ${token}`,
        'last-event-id': '0',
      });
      try {
        await stream.ready;
        expect(stream.status()).toBe(200);
        await eventually(async () => (stream.events.length >= 6 ? true : undefined));
        expect(stream.events.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5', '6']);
        expect(stream.events.map((e) => (JSON.parse(e.data ?? '{}') as Message).content)).toEqual(contents);
      } finally {
        stream.close();
      }
    });
  });

  it('pages sessions with large metadata and state by bytes, and the cursor reaches them all', async () => {
    const blob = (c: string) => ({ blob: c.repeat(64 * KiB - bytesOf({ blob: '' })) });
    const made: string[] = [];
    for (let i = 0; i < 10; i++)
      made.push((await newSession(`large ${i}`, { metadata: blob('m'), state: blob('s') })).id);
    const { items, pages } = await walk('/api/v1/sessions?limit=200');
    expect(pages).toBeGreaterThan(1);
    expect(items.map((s) => (s as unknown as { id: string }).id)).toEqual(expect.arrayContaining(made));
  });

  describe('a message whose JSON nears max_payload (escaped control characters)', () => {
    // 160 KiB of U+0001 is within the content limit, but JSON writes each as \u0001: 960 KiB,
    // as much as a 1 MiB request body can carry.
    const content = '\u0001'.repeat(160 * KiB);

    it('appends, streams live, lists and exports whole', async () => {
      const session = await newSession('Escaped');
      const stream = openStream(`/api/v1/sessions/${session.id}/stream`, { authorization: `Bearer ${token}` });
      try {
        await stream.ready;
        const created = await append(session.id, { role: 'tool', content });
        expect(created.status).toBe(201);
        expect(bytesOf(created.body)).toBeGreaterThan(960 * KiB);
        expect(created.body.content).toBe(content);
        expect((await append(session.id, { role: 'user', content: 'small' })).status).toBe(201);
        await eventually(async () => (stream.events.length >= 2 ? true : undefined));
        const live = stream.events.map((e) => JSON.parse(e.data ?? '{}') as Message);
        expect(live.map((m) => m.seq)).toEqual([1, 2]);
        expect(live[0].content).toBe(content);
      } finally {
        stream.close();
      }
      const listed = await api('GET', `/api/v1/sessions/${session.id}/messages?limit=1`, { token });
      expect(listed.status).toBe(200);
      expect(listed.body.items[0].content).toBe(content);
      const json = await api('GET', `/api/v1/sessions/${session.id}/export?format=json`, { token });
      expect(json.body.messages.map((m: Message) => m.content)).toEqual([content, 'small']);
    });
  });

  describe('a message at the limits: 256 KiB of content and 64 KiB of metadata', () => {
    const content = filler('largest', 256 * KiB, 'z');
    const metadata = { blob: 'm'.repeat(64 * KiB - bytesOf({ blob: '' })) };
    let session: { id: string };

    beforeAll(async () => {
      expect(bytesOf(metadata)).toBe(64 * KiB);
      session = await newSession('At the limits');
      for (let i = 0; i < 3; i++) {
        expect((await append(session.id, { role: 'assistant', content, metadata })).status).toBe(201);
      }
    });

    it('lists, exports and streams', async () => {
      const listed = await walk(`/api/v1/sessions/${session.id}/messages`);
      expect(listed.items.map((m) => m.seq)).toEqual([1, 2, 3]);
      for (const m of listed.items) expect(m).toMatchObject({ content, metadata });

      const json = await api('GET', `/api/v1/sessions/${session.id}/export?format=json`, { token });
      expect(json.body.messages).toHaveLength(3);
      for (const m of json.body.messages) expect(m).toMatchObject({ content, metadata });
      const md = await api('GET', `/api/v1/sessions/${session.id}/export?format=markdown`, { token });
      expect((md.body as string).split(content)).toHaveLength(4);

      const stream = openStream(`/api/v1/sessions/${session.id}/stream`, {
        authorization: `Bearer ${token}`,
        'last-event-id': '0',
      });
      try {
        await stream.ready;
        await eventually(async () => (stream.events.length >= 3 ? true : undefined));
        for (const e of stream.events) expect(JSON.parse(e.data ?? '{}')).toMatchObject({ content, metadata });
      } finally {
        stream.close();
      }
    });

    it('answers 413 naming the field one byte beyond a limit', async () => {
      const longer = await append(session.id, { role: 'user', content: `${content}x` });
      expect(longer.status).toBe(413);
      expect(longer.body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', errors: [{ field: 'content' }] });
      const multibyte = await append(session.id, { role: 'user', content: 'é'.repeat(128 * KiB) + 'x' });
      expect(multibyte.status).toBe(413);
      const heavier = await append(session.id, {
        role: 'user',
        content: 'hi',
        metadata: { blob: `${metadata.blob}m` },
      });
      expect(heavier.status).toBe(413);
      expect(heavier.body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', errors: [{ field: 'metadata' }] });

      const inBatch = await api('POST', `/api/v1/sessions/${session.id}/messages/batch`, {
        token,
        body: {
          messages: [
            { role: 'user', content: 'fine' },
            { role: 'user', content: `${content}x` },
          ],
        },
      });
      expect(inBatch.status).toBe(413);
      expect(inBatch.body.errors).toEqual([{ field: 'messages.1.content', message: expect.any(String) }]);

      for (const field of ['metadata', 'state']) {
        const big = await api('POST', '/api/v1/sessions', {
          token,
          body: { title: 'heavy', [field]: { blob: `${metadata.blob}m` } },
        });
        expect(big.status).toBe(413);
        expect(big.body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', errors: [{ field }] });
        const patched = await api('PATCH', `/api/v1/sessions/${session.id}`, {
          token,
          body: { [field]: { blob: `${metadata.blob}m` } },
        });
        expect(patched.status).toBe(413);
        expect(patched.body).toMatchObject({ errors: [{ field }] });
      }
      const atLimit = await newSession('heavy but fine', { metadata, state: metadata });
      expect((await api('GET', `/api/v1/sessions/${atLimit.id}`, { token })).body).toMatchObject({
        metadata,
        state: metadata,
      });
      expect((await walk(`/api/v1/sessions/${session.id}/messages`)).items).toHaveLength(3);
    });
  });

  it('describes the cursors of cut pages in the OpenAPI document', async () => {
    const doc = (await api('GET', '/openapi.json')).body;
    const ok = (path: string) => doc.paths[path].get.responses['200'].content['application/json'].schema;
    expect(ok('/api/v1/sessions/{id}').properties.messages_next_cursor.description).toContain('order=desc');
    const shapes = ok('/api/v1/sessions/{id}/messages').anyOf as { properties: Record<string, unknown> }[];
    expect(shapes.map((shape) => Object.keys(shape.properties).sort())).toEqual([
      ['items', 'next_cursor', 'page', 'size', 'total'],
      ['items', 'next_cursor'],
    ]);
    for (const path of [
      '/api/v1/sessions/{id}/messages',
      '/api/v1/messages/search',
      '/api/v1/usage/records',
      '/api/v1/usage/prices',
      '/api/v1/bots/{id}/activity',
    ]) {
      expect({ path, refusals: doc.paths[path].get.responses['400'].description }).toEqual({
        path,
        refusals: expect.stringContaining('INVALID_CURSOR'),
      });
    }
  });

  describe('a batch at the limits: 500 messages, 768 KiB together', () => {
    /** 500 messages whose JSON is `total` bytes. */
    function batchOf(total: number) {
      const messages = Array.from({ length: 500 }, (_, i) => ({
        role: 'user',
        content: '',
        tokens: 1,
        client_message_id: `batch-${String(i).padStart(3, '0')}`,
      }));
      let spare = total - bytesOf(messages);
      messages.forEach((m, i) => {
        const share = Math.floor(spare / (500 - i));
        m.content = filler(`b${i}`, share, 'q');
        spare -= share;
      });
      expect(bytesOf(messages)).toBe(total);
      return messages;
    }

    it('takes 500 messages just under 768 KiB together and answers all 500', async () => {
      const session = await newSession('Full batch');
      const messages = batchOf(768 * KiB - 1);
      const res = await api('POST', `/api/v1/sessions/${session.id}/messages/batch`, { token, body: { messages } });
      expect(res.status).toBe(201);
      expect(res.body.items).toHaveLength(500);
      expect(res.body.items.map((m: Message) => m.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
      expect(res.body.items.map((m: Message) => m.content)).toEqual(messages.map((m) => m.content));
      const listed = await walk(`/api/v1/sessions/${session.id}/messages?limit=200`);
      expect(listed.items).toHaveLength(500);
    });

    it('answers a retried batch as stored, unless what was stored is too large to answer at once', async () => {
      const session = await newSession('Retried batch');
      const contents = Array.from({ length: 4 }, (_, i) => filler(`stored ${i}`, 250_000));
      for (const [i, content] of contents.entries()) {
        expect((await append(session.id, { role: 'user', content, client_message_id: `c-${i}` })).status).toBe(201);
      }
      const retry = (n: number) =>
        api('POST', `/api/v1/sessions/${session.id}/messages/batch`, {
          token,
          body: {
            messages: Array.from({ length: n }, (_, i) => ({
              role: 'user',
              content: 'again',
              client_message_id: `c-${i}`,
            })),
          },
        });
      const three = await retry(3);
      expect(three.status).toBe(201);
      expect(three.body.items.map((m: Message) => m.content)).toEqual(contents.slice(0, 3));
      const four = await retry(4);
      expect(four.status).toBe(413);
      expect(four.body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', errors: [{ field: 'messages' }] });
    });

    it('refuses one byte more with 413 naming the messages', async () => {
      const session = await newSession('Overfull batch');
      const res = await api('POST', `/api/v1/sessions/${session.id}/messages/batch`, {
        token,
        body: { messages: batchOf(768 * KiB + 1) },
      });
      expect(res.status).toBe(413);
      expect(res.body).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', errors: [{ field: 'messages' }] });
      expect((await api('GET', `/api/v1/sessions/${session.id}/messages`, { token })).body.items).toEqual([]);
    });
  });

  describe('a page as PostgreSQL renders it', () => {
    it('answers every character and value of a message as it was stored, both ways and by cursor', async () => {
      const session = await newSession('Rendered');
      const tricky = [
        'quotes " and \\ backslashes \\"',
        'lines\nand\ttabs\r\n, a bell \u0007, an escape \u001b and \u007f',
        'line and paragraph separators \u2028 \u2029, é, 漢字, 😀 and \ud83d\udc4d',
        '</script><!-- & ?x=1&y=2 -->',
      ];
      const metadata = {
        nested: { deep: [1, -2.5, 0.1, 1e-7, 2 ** 53, 1e21, true, false, null, 'é"\\'] },
        empty: {},
        list: [],
        'key with "quotes"': 'v',
      };
      const sent = [];
      for (const [i, content] of tricky.entries()) {
        const body = { role: i % 2 ? 'assistant' : 'user', content, tokens: i, metadata, client_message_id: `r-${i}` };
        const res = await append(session.id, body);
        expect(res.status).toBe(201);
        sent.push(res.body);
      }
      const asc = await api('GET', `/api/v1/sessions/${session.id}/messages`, { token });
      expect(asc.body).toEqual({ items: sent, next_cursor: null });
      const desc = await api('GET', `/api/v1/sessions/${session.id}/messages?order=desc`, { token });
      expect(desc.body).toEqual({ items: [...sent].reverse(), next_cursor: null });
      expect((await walk(`/api/v1/sessions/${session.id}/messages?limit=1`)).items).toEqual(sent);
      expect((await walk(`/api/v1/sessions/${session.id}/messages?order=desc&limit=3`)).items).toEqual(
        [...sent].reverse(),
      );
    });

    it('answers a page whose numbers PostgreSQL would spell out past the budget, compactly', async () => {
      const session = await newSession('Spelled out');
      // About 9,000 numbers of 1e300 in 64 KiB of JSON: jsonb renders each as 301 digits, so
      // the page as PostgreSQL renders it would weigh 2.7 MB.
      const big = (n: number) => ({ n: Array.from({ length: n }, () => 1e300) });
      let count = 1;
      while (bytesOf(big(count * 2)) <= 64 * KiB) count *= 2;
      while (bytesOf(big(count + 500)) <= 64 * KiB) count += 500;
      const metadata = big(count);
      expect(bytesOf(metadata)).toBeGreaterThan(56 * KiB);
      const sent = [];
      for (let i = 0; i < 3; i++) {
        const res = await append(session.id, { role: 'user', content: `spelled ${i}`, metadata });
        expect(res.status).toBe(201);
        sent.push(res.body);
      }
      const res = await api('GET', `/api/v1/sessions/${session.id}/messages?limit=2`, { token });
      expect(res.status).toBe(200);
      expect(bytesOf(res.body)).toBeLessThan(256 * KiB);
      expect(res.body.items).toEqual(sent.slice(0, 2));
      expect(res.body.next_cursor).toEqual(expect.any(String));
      expect((await walk(`/api/v1/sessions/${session.id}/messages?order=desc&limit=2`)).items).toEqual(
        [...sent].reverse(),
      );
    });
  });
});

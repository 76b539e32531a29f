import { adminLogin, api, gatewayUrl, newUser } from '../support/http';

/** Sends bytes as they are, with the content type given (none when undefined). */
async function send(
  method: string,
  path: string,
  body: string | Uint8Array | undefined,
  options: { token?: string; contentType?: string } = {},
) {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.contentType) headers['content-type'] = options.contentType;
  // Bytes, not a string: fetch would label a string text/plain on its own.
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const res = await fetch(`${gatewayUrl()}${path}`, { method, headers, body: bytes });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed, type: res.headers.get('content-type') ?? '' };
}

const JSON_TYPE = 'application/json';
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const nestedObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('the HTTP edge (e2e)', () => {
  let token: string;

  beforeAll(async () => {
    token = (await newUser(await adminLogin(), 'edge')).token;
  });

  /** A 4xx problem+json with this code, and, when given, exactly these field errors. */
  function expectProblem(
    res: { status: number; body: any; type: string },
    status: number,
    code: string,
    errors?: { field: string; message?: unknown }[],
  ) {
    expect({ status: res.status, code: res.body?.code }).toEqual({ status, code });
    expect(res.type).toContain('application/problem+json');
    expect(res.body.retryable).toBe(false);
    if (errors) expect(res.body.errors).toEqual(errors.map((e) => expect.objectContaining(e)));
  }

  it('refuses a body nested deeper than 64 levels before parsing it, on any route', async () => {
    const deepBodies = [
      nested(20_000),
      nestedObject(20_000),
      `{"title":"deep","metadata":${nestedObject(20_000)}}`,
      nested(65),
    ];
    for (const body of deepBodies) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE });
      expectProblem(res, 400, 'VALIDATION_FAILED', [{ field: 'body', message: 'nests deeper than 64 levels' }]);
    }
    // Before authentication too: a public route, and a protected one called without credentials.
    for (const path of ['/api/v1/auth/login', '/api/v1/usage/events', '/api/v1/sessions']) {
      const res = await send('POST', path, nestedObject(20_000), { contentType: JSON_TYPE });
      expectProblem(res, 400, 'VALIDATION_FAILED', [{ field: 'body' }]);
    }
    // 64 levels is within the limit: the body is then judged by the route's schema.
    const atLimit = await send('POST', '/api/v1/sessions', nested(64), { token, contentType: JSON_TYPE });
    expectProblem(atLimit, 400, 'VALIDATION_FAILED', [{ field: 'body', message: 'must be a JSON object' }]);
  });

  it('answers malformed JSON, invalid UTF-8 and poisoned keys with 400 naming the body', async () => {
    for (const body of ['{"title":', '{title: "x"}', '{"title":"x"}}', 'nul']) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE });
      expectProblem(res, 400, 'BAD_REQUEST', [{ field: 'body', message: expect.stringContaining('not valid JSON') }]);
    }
    const latin1 = Uint8Array.from([...Buffer.from('{"title":"caf'), 0xe9, ...Buffer.from('"}')]);
    for (const body of [latin1, Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])]) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE });
      expectProblem(res, 400, 'BAD_REQUEST', [{ field: 'body', message: 'is not valid UTF-8' }]);
    }
    const poisoned = await send('POST', '/api/v1/sessions', '{"title":"x","__proto__":{"admin":true}}', {
      token,
      contentType: JSON_TYPE,
    });
    expectProblem(poisoned, 400, 'BAD_REQUEST', [{ field: 'body' }]);
  });

  it('takes JSON only: forms, text and bodies without a content type are 415', async () => {
    const cases: [string, string | undefined][] = [
      ['title=form', 'application/x-www-form-urlencoded'],
      ['{"title":"text"}', 'text/plain'],
      ['<title>x</title>', 'application/xml'],
      ['{"title":"none"}', undefined],
    ];
    for (const [body, contentType] of cases) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType });
      expectProblem(res, 415, 'UNSUPPORTED_MEDIA_TYPE');
    }
    // None of them created a session.
    const listed = await api('GET', '/api/v1/sessions', { token });
    expect(listed.body.items).toEqual([]);
    // JSON with a charset parameter is JSON.
    const created = await send('POST', '/api/v1/sessions', '{"title":"ok"}', {
      token,
      contentType: 'application/json; charset=utf-8',
    });
    expect(created.status).toBe(201);
    await api('DELETE', `/api/v1/sessions/${created.body.id}`, { token });
  });

  it('refuses a body over 1 MiB with 413, whatever it holds', async () => {
    for (const body of [JSON.stringify({ title: 'x'.repeat(1024 * 1024) }), 'x'.repeat(1024 * 1024 + 1)]) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE });
      expectProblem(res, 413, 'PAYLOAD_TOO_LARGE');
    }
  });

  it('lets a client finish sending a body it refuses, so the client reads the 413 rather than a reset', async () => {
    // The gateway answers from the declared length, before the body arrives. Were the connection
    // closed at once, a client still sending would meet a reset (fetch: EPIPE): about one in two
    // at 5 MB. Up to 16 MiB the body is read and dropped instead.
    const body = new TextEncoder().encode(JSON.stringify({ title: 'x'.repeat(5_000_000) }));
    const outcomes: string[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE }).catch(
        (error: Error & { cause?: { code?: string } }) => ({ status: 0, error: error.cause?.code ?? error.message }),
      );
      outcomes.push('error' in res ? `failed: ${res.error}` : `${res.status} ${res.body?.code}`);
    }
    expect(outcomes.filter((o) => o !== '413 PAYLOAD_TOO_LARGE')).toEqual([]);
  });

  it('wants a JSON object: a bare string, number, boolean or array names the body', async () => {
    for (const body of ['"title"', '42', 'true', '[{"title":"x"}]', '[]']) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE });
      expectProblem(res, 400, 'VALIDATION_FAILED', [{ field: 'body', message: 'must be a JSON object' }]);
    }
    for (const body of ['null', '', undefined]) {
      const res = await send('POST', '/api/v1/sessions', body, { token, contentType: JSON_TYPE });
      expectProblem(res, 400, 'VALIDATION_FAILED', [{ field: 'body', message: 'a JSON body is required' }]);
    }
  });

  it('reads an empty JSON body as no body, so a DELETE sent with the header works', async () => {
    const created = await api('POST', '/api/v1/sessions', { token, body: { title: 'to delete' } });
    const res = await send('DELETE', `/api/v1/sessions/${created.body.id}`, undefined, {
      token,
      contentType: JSON_TYPE,
    });
    expect(res.status).toBe(204);
    expect((await api('GET', '/api/v1/sessions', { token })).body.items).toEqual([]);
  });

  it('answers a URL it cannot decode, and a path parameter over its limit, with a problem', async () => {
    const broken = await fetch(`${gatewayUrl()}/api/v1/sessions/%E0%A4%A`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expectProblem(
      { status: broken.status, body: await broken.json(), type: broken.headers.get('content-type') ?? '' },
      400,
      'BAD_REQUEST',
    );
    const long = await fetch(`${gatewayUrl()}/api/v1/sessions/${'x'.repeat(2000)}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expectProblem(
      { status: long.status, body: await long.json(), type: long.headers.get('content-type') ?? '' },
      414,
      'URI_TOO_LONG',
    );
  });

  it('still answers after all of it', async () => {
    const ready = await fetch(`${gatewayUrl()}/readyz`);
    expect(ready.status).toBe(200);
    expect((await api('GET', '/api/v1/me', { token })).status).toBe(200);
  });
});

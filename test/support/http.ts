/** A small client for the gateway, as an outside developer would call it. */
export const gatewayUrl = () => {
  const url = process.env.E2E_GATEWAY_URL;
  if (!url) throw new Error('E2E_GATEWAY_URL is not set: run through the e2e project');
  return url;
};

export interface Answer<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export async function api<T = any>(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    headers['content-type'] ??= 'application/json';
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(`${gatewayUrl()}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

/** A JSON call to a gateway of a suite's own stack (not the e2e project's): status and parsed body. */
export async function callGateway(
  base: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export async function login(username: string, password: string): Promise<string> {
  const res = await api('POST', '/api/v1/auth/login', { body: { username, password } });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.access_token as string;
}

export const adminLogin = () => login(process.env.E2E_ADMIN_USERNAME ?? 'admin', process.env.E2E_ADMIN_PASSWORD ?? '');

let counter = 0;
/** Creates a user through the admin API and logs them in. */
export async function newUser(
  adminToken: string,
  name = 'user',
): Promise<{ id: string; token: string; username: string }> {
  const username = `${name}-${Date.now().toString(36)}-${counter++}`;
  const password = 'correct-horse-battery';
  const res = await api('POST', '/api/v1/users', { token: adminToken, body: { username, password } });
  if (res.status !== 201) throw new Error(`create user failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, username, token: await login(username, password) };
}

export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A cursor with another character where its MAC ends. */
export const editedCursor = (cursor: string) => `${cursor.slice(0, -1)}${cursor.endsWith('A') ? 'B' : 'A'}`;

/**
 * Each `[name, path, token]` answers 400 INVALID_CURSOR naming `query.cursor`; otherwise throws,
 * listing every case that did not (this file is also read by the benches, which have no jest).
 */
export async function expectCursorsRefused(cases: [string, string, string][]): Promise<void> {
  const wrong: string[] = [];
  for (const [name, path, token] of cases) {
    const res = await api('GET', path, { token });
    const field = res.body?.errors?.[0]?.field;
    if (res.status !== 400 || res.body?.code !== 'INVALID_CURSOR' || field !== 'query.cursor') {
      wrong.push(`${name}: ${res.status} ${res.body?.code} ${field}`);
    }
  }
  if (wrong.length > 0) throw new Error(`cursors not refused as INVALID_CURSOR (query.cursor):\n${wrong.join('\n')}`);
}

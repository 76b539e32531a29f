import { reactive, ref } from 'vue';

/**
 * The console's only way to the server: the public REST API under /api/v1, with the signed-in
 * user's token. The access token lives in memory only; the refresh token in sessionStorage (this
 * tab only), rotated on every refresh. A 401 refreshes once and retries; a failed refresh signs out.
 */
const REFRESH_KEY = 'parley.refresh_token';

export interface Problem {
  status: number;
  code?: string;
  title?: string;
  detail?: string;
  errors?: { field: string; message: string }[];
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
  }
}

export interface Me {
  type: 'user';
  id: string;
  username: string;
  email: string | null;
  is_admin: boolean;
  roles: string[];
  groups: { id: string; name: string; is_group_admin: boolean }[];
}

interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
}

export const auth = reactive({
  me: null as Me | null,
  /** Set when the session ended on its own (refresh refused): the sign-in page says so. */
  notice: '' as string,
});

let accessToken: string | null = null;
let accessExpiresAt = 0;
let refreshing: Promise<boolean> | null = null;

function keep(tokens: Tokens): void {
  accessToken = tokens.access_token;
  accessExpiresAt = Date.now() + tokens.expires_in * 1000;
  sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
}

function forget(): void {
  accessToken = null;
  accessExpiresAt = 0;
  sessionStorage.removeItem(REFRESH_KEY);
}

async function problemOf(res: Response): Promise<Problem> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as Problem;
    return { ...body, status: res.status };
  } catch {
    return { status: res.status, detail: text.slice(0, 300) || res.statusText };
  }
}

/** One refresh at a time: refresh tokens rotate, so two at once would spend the same one twice. */
export function refresh(): Promise<boolean> {
  refreshing ??= (async () => {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (!token) return false;
    try {
      const res = await fetch('/api/v1/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: token }),
      });
      if (!res.ok) return false;
      keep((await res.json()) as Tokens);
      return true;
    } catch {
      return false;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** The access token, refreshed first when it expires within `marginMs`. */
export async function freshToken(marginMs = 5000): Promise<string | null> {
  if (!accessToken || Date.now() > accessExpiresAt - marginMs) {
    if (!(await refresh())) return null;
  }
  return accessToken;
}

export function signedOut(notice = ''): void {
  forget();
  auth.me = null;
  auth.notice = notice;
}

/**
 * A view's error line and the way its actions report into it: `attempt` clears the line, runs
 * the action and, if it throws, shows what went wrong (as `errorText` words it). It answers
 * whether the action succeeded.
 */
export function errorLine() {
  const error = ref('');
  async function attempt(action: () => Promise<unknown>): Promise<boolean> {
    error.value = '';
    try {
      await action();
      return true;
    } catch (e) {
      error.value = errorText(e);
      return false;
    }
  }
  return { error, attempt };
}

/**
 * For a view whose loads can overlap (it loads as it opens and again when its filters change):
 * `begin()` numbers a load and `latest(n)` tells whether it is still the newest, so an answer
 * that arrives after a newer load's is dropped instead of replacing it.
 */
export function loadCounter() {
  let newest = 0;
  return { begin: () => ++newest, latest: (n: number) => n === newest };
}

type Query = Record<string, string | number | undefined | null | false>;

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '' && value !== false) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** A call with the user's token; 401 refreshes once and tries again, else signs out. */
export async function raw(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const send = () =>
    fetch(path, {
      method,
      headers: {
        ...headers,
        ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let res = await send();
  if (res.status === 401) {
    if (await refresh()) res = await send();
    if (res.status === 401) {
      signedOut('Your session ended; sign in again.');
      throw new ApiError(await problemOf(res));
    }
  }
  if (!res.ok) throw new ApiError(await problemOf(res));
  return res;
}

export async function call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await raw(method, path, body);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const get = <T = unknown>(path: string, query?: Query) => call<T>('GET', withQuery(path, query));

export async function signIn(username: string, password: string): Promise<void> {
  const res = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!res.ok) throw new ApiError(await problemOf(res));
  keep((await res.json()) as Tokens);
  await loadMe();
}

export async function loadMe(): Promise<void> {
  const me = await call<Me | { type: 'bot' }>('GET', '/api/v1/me');
  if (me.type !== 'user') {
    signedOut('The console is for users, not bot keys.');
    return;
  }
  auth.me = me;
  auth.notice = '';
}

/** On start: a refresh token kept in this tab signs back in without a password. */
export async function resume(): Promise<void> {
  if (!sessionStorage.getItem(REFRESH_KEY)) return;
  if (await refresh()) await loadMe().catch(() => signedOut());
  else signedOut();
}

export async function signOut(): Promise<void> {
  const token = sessionStorage.getItem(REFRESH_KEY);
  forget();
  auth.me = null;
  auth.notice = '';
  if (token) {
    await fetch('/api/v1/auth/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: token }),
    }).catch(() => undefined);
  }
}

/** The text of an error to show: the problem's `detail`, and its field errors. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    const fields = (error.problem.errors ?? []).map((e) => `${e.field}: ${e.message}`).join('; ');
    return [error.problem.detail || error.problem.title || `HTTP ${error.problem.status}`, fields]
      .filter(Boolean)
      .join(' — ');
  }
  return error instanceof Error ? error.message : String(error);
}

/** Saves text as a file through an object URL (no navigation, no inline script). */
export function download(name: string, content: Blob | string, type = 'text/plain'): void {
  const blob = typeof content === 'string' ? new Blob([content], { type }) : content;
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A link target only for http(s) URLs: anything else (javascript:, data:) is shown as text. */
export function safeUrl(url: unknown): string | null {
  if (typeof url !== 'string') return null;
  try {
    const parsed = new URL(url, 'http://invalid.local');
    if (!/^https?:\/\/[^/]/i.test(url.trim())) return null;
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : null;
  } catch {
    return null;
  }
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

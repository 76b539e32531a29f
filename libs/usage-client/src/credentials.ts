import {
  ErrorPayloadSchema,
  MAX_NATS_CREDENTIALS_TTL,
  MIN_NATS_CREDENTIALS_TTL,
  NatsCredentialsSchema,
} from '@parley/contracts';
import { z } from 'zod';

/** Where a bot gets its NATS credentials: the gateway's `POST /api/v1/bots/{id}/nats-credentials`. */
export interface CredentialsOptions {
  /** The gateway's base URL, e.g. `https://parley.example.com` (the route is `/api/v1/…` under it). */
  gatewayUrl: string;
  /** The bot's API key, sent as `X-API-Key`. */
  apiKey: string;
  /** Lifetime to ask for, in seconds (1 to 86400); the gateway's default (3600) when left out. */
  ttlSeconds?: number;
  /** Share of the lifetime after which they are renewed, between 0.1 and 0.9. Default 2/3. */
  renewAfter?: number;
  /** Wait for one answer of the gateway. Default 10000. */
  timeoutMs?: number;
}

export type ResolvedCredentialsOptions = Required<Omit<CredentialsOptions, 'ttlSeconds'>> & { ttlSeconds?: number };

export const DEFAULT_RENEW_AFTER = 2 / 3;
export const DEFAULT_CREDENTIALS_TIMEOUT_MS = 10_000;

const CredentialsOptionsSchema = z.object({
  gatewayUrl: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  apiKey: z.string().min(1, 'must not be empty'),
  ttlSeconds: z
    .number()
    .int('must be an integer')
    .min(MIN_NATS_CREDENTIALS_TTL)
    .max(MAX_NATS_CREDENTIALS_TTL)
    .optional(),
  renewAfter: z.number().min(0.1).max(0.9).default(DEFAULT_RENEW_AFTER),
  timeoutMs: z.number().int('must be an integer').min(1).default(DEFAULT_CREDENTIALS_TIMEOUT_MS),
});

/** Fills the defaults; throws a TypeError naming every bad option. */
export function resolveCredentialsOptions(options: CredentialsOptions): ResolvedCredentialsOptions {
  const parsed = CredentialsOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `credentials.${i.path.map(String).join('.')}: ${i.message}`);
    throw new TypeError(`invalid UsageClient options: ${problems.join('; ')}`);
  }
  return parsed.data;
}

/**
 * The gateway refused or could not give NATS credentials. `retryable` is false for answers that
 * will not change by asking again soon: 401 (the API key is not valid), 403 (the bot is disabled or
 * the key may not), 404 (no such bot), 409 `NATS_CREDENTIALS_UNAVAILABLE` (NATS runs without JWT
 * accounts). Network failures, timeouts, 408, 429 and 5xx are retryable.
 */
export class CredentialsError extends Error {
  readonly code: string;
  /** The HTTP status; 503 when the gateway could not be reached, 504 when it did not answer in time. */
  readonly status: number;
  readonly retryable: boolean;
  /** Seconds to wait before asking again, when the gateway said (429). */
  readonly retryAfter?: number;

  constructor(
    payload: { code: string; status: number; detail: string; retryable: boolean; retryAfter?: number },
    options?: ErrorOptions,
  ) {
    super(payload.detail, options);
    this.name = 'CredentialsError';
    this.code = payload.code;
    this.status = payload.status;
    this.retryable = payload.retryable;
    if (payload.retryAfter !== undefined) this.retryAfter = payload.retryAfter;
  }
}

/** Credentials as the gateway issued them, with when to renew them. */
export interface IssuedCredentials {
  /** The credentials file: user JWT and nkey seed. */
  creds: string;
  publicKey: string;
  expiresAt: Date;
  inboxPrefix: string;
  publish: string[];
  subscribe: string[];
  /** How long they live from when they were received, in ms (Infinity when they do not expire). */
  lifetimeMs: number;
  /** `Date.now()` when they were received. */
  receivedAt: number;
}

const CREDS_BLOCK = /\s*(?:(?:-{3,}[^\n]*-{3,}\n)(.+)(?:\n\s*-{3,}[^\n]*-{3,}\n))/gi;

/** The JWT and seed of a credentials file, or undefined when it is not one. */
export function parseCreds(creds: string): { jwt: string; seed: string } | undefined {
  const re = new RegExp(CREDS_BLOCK.source, CREDS_BLOCK.flags);
  const jwt = re.exec(creds)?.[1]?.trim();
  const seed = re.exec(creds)?.[1]?.trim();
  if (!jwt || !seed || jwt.split('.').length !== 3 || !seed.startsWith('SU')) return undefined;
  return { jwt, seed };
}

/** `iat` and `exp` (seconds) of a JWT's claims, without checking its signature (the server does). */
export function jwtTimes(jwt: string): { iat?: number; exp?: number } {
  try {
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as unknown;
    if (typeof claims !== 'object' || claims === null) return {};
    const { iat, exp } = claims as { iat?: unknown; exp?: unknown };
    return {
      ...(typeof iat === 'number' ? { iat } : {}),
      ...(typeof exp === 'number' ? { exp } : {}),
    };
  } catch {
    return {};
  }
}

/**
 * How long credentials live from now: the shorter of the JWT's own span (`exp - iat`, immune to a
 * skewed local clock) and the time left until `exp` by the local clock (which also counts the
 * fraction of a second `iat` was rounded down by).
 */
export function lifetimeMs(jwt: string, expiresAt: Date, now = Date.now()): number {
  const { iat, exp } = jwtTimes(jwt);
  const candidates: number[] = [];
  if (iat !== undefined && exp !== undefined) candidates.push((exp - iat) * 1000);
  const expMs = exp !== undefined ? exp * 1000 : expiresAt.getTime();
  if (Number.isFinite(expMs) && expMs - now > 0) candidates.push(expMs - now);
  if (candidates.length === 0) return exp === undefined && Number.isNaN(expiresAt.getTime()) ? Infinity : 0;
  return Math.max(0, Math.min(...candidates));
}

/** Asks the gateway for new NATS credentials of `botId`. Throws CredentialsError. */
export async function fetchNatsCredentials(
  options: ResolvedCredentialsOptions,
  botId: string,
): Promise<IssuedCredentials> {
  const url = `${options.gatewayUrl.replace(/\/+$/, '')}/api/v1/bots/${encodeURIComponent(botId)}/nats-credentials`;
  const body = options.ttlSeconds === undefined ? {} : { ttl_seconds: options.ttlSeconds };
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-api-key': options.apiKey },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    text = await response.text();
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
    throw new CredentialsError(
      timedOut
        ? {
            code: 'UPSTREAM_TIMEOUT',
            status: 504,
            detail: `no answer from ${url} within ${options.timeoutMs} ms`,
            retryable: true,
          }
        : {
            code: 'UPSTREAM_UNAVAILABLE',
            status: 503,
            detail: `could not reach ${url}: ${error instanceof Error ? error.message : String(error)}`,
            retryable: true,
          },
      { cause: error },
    );
  }
  const json = parseJson(text);
  if (response.status !== 201 && response.status !== 200) {
    const payload = ErrorPayloadSchema.safeParse(json);
    const status = response.status;
    const retryAfterHeader = Number(response.headers.get('retry-after'));
    const retryAfter = payload.success ? payload.data.retry_after : undefined;
    throw new CredentialsError({
      code: payload.success ? payload.data.code : `HTTP_${status}`,
      status,
      detail: `${url} answered ${status}${payload.success ? `: ${payload.data.detail}` : ''}`,
      retryable: status === 408 || status === 429 || status >= 500,
      ...(retryAfter !== undefined
        ? { retryAfter }
        : Number.isFinite(retryAfterHeader) && retryAfterHeader > 0
          ? { retryAfter: retryAfterHeader }
          : {}),
    });
  }
  const parsed = NatsCredentialsSchema.safeParse(json);
  const creds = parsed.success ? parseCreds(parsed.data.creds) : undefined;
  const inboxOk = parsed.success && /^[^\s*>.]+(\.[^\s*>.]+)*$/.test(parsed.data.inbox_prefix);
  if (!parsed.success || !creds || !inboxOk) {
    throw new CredentialsError(
      {
        code: 'INTERNAL',
        status: 502,
        detail: `${url} answered out of contract (${!parsed.success ? 'fields' : !creds ? 'creds' : 'inbox_prefix'})`,
        retryable: true,
      },
      { cause: parsed.error },
    );
  }
  const receivedAt = Date.now();
  const expiresAt = new Date(parsed.data.expires_at);
  return {
    creds: parsed.data.creds,
    publicKey: parsed.data.public_key,
    expiresAt,
    inboxPrefix: parsed.data.inbox_prefix,
    publish: parsed.data.publish,
    subscribe: parsed.data.subscribe,
    lifetimeMs: lifetimeMs(creds.jwt, expiresAt, receivedAt),
    receivedAt,
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export const RENEW_RETRY_START_MS = 500;
/** Never renew sooner than this after the last renewal, whatever the credentials say. */
export const MIN_RENEW_DELAY_MS = 250;
export const RENEW_RETRY_CAP_MS = 30_000;
/** How often a bot whose credentials were refused (401/403/404/409) asks again. */
export const REFUSED_RETRY_MS = 60_000;

export interface RenewerHooks {
  /** New credentials are in use (after a renewal, not the first ones). */
  renewed(credentials: IssuedCredentials): void;
  /** One renewal failed; it is tried again in `retryInMs`. */
  failed(error: CredentialsError, retryInMs: number): void;
}

/**
 * Keeps a bot's credentials fresh: renews them after `renewAfter` of their lifetime, and on failure
 * tries again with backoff (at least a few times before they expire), without end until stopped.
 */
export class CredentialsRenewer {
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;

  constructor(
    private current: IssuedCredentials,
    private readonly fetchCredentials: () => Promise<IssuedCredentials>,
    private readonly renewAfter: number,
    private readonly hooks: RenewerHooks,
  ) {}

  get credentials(): IssuedCredentials {
    return this.current;
  }

  start(): void {
    this.schedule(this.renewDelay());
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Wait from now until the current credentials are due for renewal. */
  private renewDelay(): number {
    const { lifetimeMs: lifetime, receivedAt } = this.current;
    if (!Number.isFinite(lifetime)) return Infinity;
    return Math.max(MIN_RENEW_DELAY_MS, receivedAt + lifetime * this.renewAfter - Date.now());
  }

  private schedule(delay: number): void {
    if (this.stopped || !Number.isFinite(delay)) return;
    this.timer = setTimeout(() => void this.renew(), delay);
    // The connection keeps the process alive while it is needed; the timer alone does not.
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    this.timer = undefined;
    try {
      const next = await this.fetchCredentials();
      if (this.stopped) return;
      this.current = next;
      this.failures = 0;
      this.hooks.renewed(next);
      this.schedule(this.renewDelay());
    } catch (error) {
      if (this.stopped) return;
      const failure =
        error instanceof CredentialsError
          ? error
          : new CredentialsError(
              { code: 'INTERNAL', status: 500, detail: String(error), retryable: true },
              { cause: error },
            );
      const delay = this.retryDelay(failure);
      this.failures++;
      this.hooks.failed(failure, delay);
      this.schedule(delay);
    }
  }

  /**
   * Backoff with jitter from 500 ms, capped at 30 s or a quarter of the credentials' lifetime if that
   * is shorter, and kept to a quarter of the time the current credentials have left.
   */
  private retryDelay(error: CredentialsError): number {
    if (!error.retryable) return REFUSED_RETRY_MS;
    const cap = Math.min(RENEW_RETRY_CAP_MS, Math.max(MIN_RENEW_DELAY_MS * 2, this.current.lifetimeMs / 4));
    const ceiling = Math.min(cap, RENEW_RETRY_START_MS * 2 ** Math.min(this.failures, 20));
    let delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    const left = this.current.receivedAt + this.current.lifetimeMs - Date.now();
    if (left > 0) delay = Math.min(delay, Math.max(100, Math.round(left / 4)));
    if (error.retryAfter !== undefined) delay = Math.max(delay, error.retryAfter * 1000);
    return delay;
  }
}

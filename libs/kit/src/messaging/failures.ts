import { ParleyError } from '@parley/contracts';

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);
const NETWORK_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Connection closed',
];

function codeOf(error: unknown): string | undefined {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A dependency is away (Postgres, an upstream service): the work is sound and will succeed
 * later, so a consumer waits and tries the same work again rather than spending deliveries.
 */
export function isInfrastructureError(error: unknown): boolean {
  if (error instanceof ParleyError) return error.code === 'UPSTREAM_UNAVAILABLE' || error.code === 'UPSTREAM_TIMEOUT';
  const code = codeOf(error);
  if (code && (NETWORK_CODES.has(code) || /^(08|53|57P0[123]|58)/.test(code))) return true;
  const message = error instanceof Error ? error.message : String(error);
  return NETWORK_MESSAGES.some((m) => message.includes(m));
}

/**
 * What a failure says is away, for a client's problem detail: the database when the failure
 * came from it (a driver error, or a PostgreSQL SQLSTATE), else "a dependency".
 */
export function unreachable(error: unknown): string {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    const { name, code } = e as { name?: unknown; code?: unknown };
    if (typeof name === 'string' && /Exception$/.test(name)) return 'the database';
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && /^(08|53|57|58)/.test(code)) return 'the database';
    e = (e as { cause?: unknown }).cause;
  }
  return 'a dependency';
}

/** Serialization failure or deadlock: the transaction lost a race and may simply run again. */
export function isConflictError(error: unknown): boolean {
  const code = codeOf(error);
  return code === '40001' || code === '40P01';
}

/** The input itself is refused (bad data, a violated constraint, a 4xx answer): retrying cannot help. */
export function isInputError(error: unknown): boolean {
  if (error instanceof ParleyError) return !error.retryable && error.status < 500;
  const code = codeOf(error);
  return code !== undefined && /^(22|23)/.test(code);
}

/** PostgreSQL cancelled the statement (57014): it ran past `statement_timeout`. */
export function isStatementTimeout(error: unknown): boolean {
  return codeOf(error) === '57014';
}

export const BACKOFF_START_MS = 100;
export const BACKOFF_CAP_MS = 5000;

/** Wait before retry number `attempt` (0-based): exponential, capped, with jitter over its upper half. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

const nameOf = (error: unknown): string | undefined =>
  error instanceof Error
    ? error.name
    : typeof error === 'object' && error
      ? String((error as { name?: unknown }).name)
      : undefined;

const numberField = (error: unknown, field: 'status' | 'code'): number | undefined => {
  if (typeof error !== 'object' || error === null) return undefined;
  const value = (error as Record<string, unknown>)[field];
  return typeof value === 'number' ? value : undefined;
};

/** No one listens on the subject: for a publish, the stream does not exist (yet) or JetStream is away. */
export function isNoResponders(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    if (nameOf(e) === 'NoResponders' || nameOf(e) === 'NoRespondersError') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * Whether publishing the same message again may succeed: a timeout, no responders (no stream yet),
 * a temporary disconnect, or JetStream answering 5xx (e.g. 503). Errors are recognised by name so
 * that a connection from another copy of the NATS library is judged the same way.
 */
export function isRetryable(error: unknown, connectionClosed: boolean): boolean {
  if (connectionClosed) return false;
  switch (nameOf(error) ?? '') {
    case 'TimeoutError':
      return true;
    case 'RequestError': {
      // No responders, or "connection disconnected"; refused permissions never heal by themselves.
      const cause = (error as { cause?: unknown }).cause;
      return nameOf(cause) !== 'PermissionViolationError';
    }
    case 'NoResponders':
    case 'NoRespondersError':
      return true;
    case 'JetStreamNotEnabled':
      // The client library reports a publish nobody answers (no stream on the subject yet) this way.
      return isNoResponders(error);
    case 'JetStreamApiError':
    case 'StreamNotFoundError': {
      const status = numberField(error, 'status') ?? 0;
      return status >= 500 || status === 408 || status === 429;
    }
    case 'JetStreamStatusError': {
      const code = numberField(error, 'code') ?? 0;
      return code >= 500 || code === 408;
    }
    default:
      return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

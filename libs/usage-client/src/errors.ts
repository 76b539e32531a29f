import type { ErrorPayload, FieldError } from '@parley/contracts';

/** A report that fails the contract or the time checks: nothing was published. */
export class UsageReportError extends Error {
  readonly errors: FieldError[];

  constructor(errors: FieldError[]) {
    super(`invalid report: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`);
    this.name = 'UsageReportError';
    this.errors = errors;
  }
}

/**
 * Parley answered a request with an error (header `Parley-Error`), or did not answer in time
 * (`UPSTREAM_TIMEOUT`, 504) or at all (`UPSTREAM_UNAVAILABLE`, 503; both retryable).
 */
export class ParleyRequestError extends Error {
  readonly code: string;
  readonly status: number;
  readonly retryable: boolean;
  /** Field problems, when the request itself was refused. */
  readonly errors?: FieldError[];
  /** Seconds to wait before asking again (`RATE_LIMITED`). */
  readonly retryAfter?: number;

  constructor(payload: ErrorPayload, options?: ErrorOptions) {
    super(payload.detail, options);
    this.name = 'ParleyRequestError';
    this.code = payload.code;
    this.status = payload.status;
    this.retryable = payload.retryable;
    if (payload.errors) this.errors = payload.errors;
    if (payload.retry_after !== undefined) this.retryAfter = payload.retry_after;
  }
}

/** The client was closed: it takes no more reports. */
export class UsageClientClosedError extends Error {
  constructor() {
    super('the usage client is closed');
    this.name = 'UsageClientClosedError';
  }
}

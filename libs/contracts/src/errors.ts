import { z } from 'zod';

/** Every stable error code a client may see. The OpenAPI document lists them. */
export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, title: 'Validation failed' },
  BAD_REQUEST: { status: 400, title: 'Bad request' },
  INVALID_CURSOR: { status: 400, title: 'Invalid cursor' },
  RANGE_TOO_LARGE: { status: 400, title: 'Range too large' },
  UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  INVALID_CREDENTIALS: { status: 401, title: 'Invalid credentials' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  CONFLICT: { status: 409, title: 'Conflict' },
  USERNAME_TAKEN: { status: 409, title: 'Username already exists' },
  NATS_CREDENTIALS_UNAVAILABLE: { status: 409, title: 'NATS credentials unavailable' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  URI_TOO_LONG: { status: 414, title: 'URI too long' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  TOO_MANY_STREAMS: { status: 429, title: 'Too many open streams' },
  TOO_MANY_EXPORTS: { status: 429, title: 'Too many exports at once' },
  INTERNAL: { status: 500, title: 'Internal error' },
  UPSTREAM_UNAVAILABLE: { status: 503, title: 'Service unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, title: 'Upstream timeout' },
  QUERY_TIMEOUT: { status: 503, title: 'Query timed out' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export const FieldErrorSchema = z.object({ field: z.string(), message: z.string() });
export type FieldError = z.infer<typeof FieldErrorSchema>;

/** The error shape that travels over NATS and is rendered as problem+json by the gateway. */
export const ErrorPayloadSchema = z.object({
  code: z.string(),
  status: z.number().int(),
  detail: z.string(),
  retryable: z.boolean(),
  errors: z.array(FieldErrorSchema).optional(),
  /** Seconds to wait before retrying (429). */
  retry_after: z.number().int().optional(),
});
export type ErrorPayload = z.infer<typeof ErrorPayloadSchema>;

/** How many field errors a problem lists. */
export const MAX_FIELD_ERRORS = 100;

export class ParleyError extends Error {
  readonly status: number;
  readonly retryable: boolean;

  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    options: { retryable?: boolean; errors?: FieldError[]; cause?: unknown; retryAfter?: number } = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = 'ParleyError';
    this.status = ERROR_CODES[code].status;
    this.retryable = options.retryable ?? this.status >= 500;
    this.errors = options.errors;
    this.retryAfter = options.retryAfter;
  }

  readonly errors?: FieldError[];
  readonly retryAfter?: number;

  /** The error as it travels; field errors beyond the first 100 are summed up in one line. */
  toPayload(): ErrorPayload {
    const errors =
      this.errors && this.errors.length > MAX_FIELD_ERRORS
        ? [
            ...this.errors.slice(0, MAX_FIELD_ERRORS),
            { field: '(more)', message: `${this.errors.length - MAX_FIELD_ERRORS} more problems` },
          ]
        : this.errors;
    return {
      code: this.code,
      status: this.status,
      detail: this.detail.length > 2000 ? `${this.detail.slice(0, 2000)}…` : this.detail,
      retryable: this.retryable,
      ...(errors ? { errors } : {}),
      ...(this.retryAfter !== undefined ? { retry_after: this.retryAfter } : {}),
    };
  }

  static fromPayload(payload: ErrorPayload): ParleyError {
    const code = (payload.code in ERROR_CODES ? payload.code : 'INTERNAL') as ErrorCode;
    return new ParleyError(code, payload.detail, {
      retryable: payload.retryable,
      errors: payload.errors,
      retryAfter: payload.retry_after,
    });
  }
}

export function isParleyError(value: unknown): value is ParleyError {
  return value instanceof ParleyError;
}

const TOO_LARGE = 'parley_too_large';

/**
 * The options of a zod refinement that enforces a size limit. Such an issue makes
 * `validationError` answer PAYLOAD_TOO_LARGE (413) naming the field, rather than 400, so a
 * limit in a schema holds the same way at the gateway and at a service's NATS boundary.
 */
export function tooLarge(message: string): { message: string; params: Record<string, unknown> } {
  return { message, params: { [TOO_LARGE]: true } };
}

function isTooLarge(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'custom' && issue.params?.[TOO_LARGE] === true;
}

const RANGE_TOO_LARGE = 'parley_range_too_large';

/**
 * The options of a zod refinement that bounds a range (of time): such an issue makes
 * `validationError` answer RANGE_TOO_LARGE (400) naming the field, at the gateway and at a
 * service's NATS boundary alike.
 */
export function rangeTooLarge(message: string): { message: string; params: Record<string, unknown> } {
  return { message, params: { [RANGE_TOO_LARGE]: true } };
}

function isRangeTooLarge(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'custom' && issue.params?.[RANGE_TOO_LARGE] === true;
}

/** Turns zod issues into the `errors[]` of a problem. */
export function fieldErrors(error: z.ZodError, root?: string): FieldError[] {
  return issueErrors(error.issues, root);
}

function issueErrors(issues: z.core.$ZodIssue[], root?: string): FieldError[] {
  return issues.flatMap((issue) => {
    const path = issue.path.map(String).join('.');
    const field = (name: string) => [root, name].filter(Boolean).join('.') || '(root)';
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        field: field([path, key].filter(Boolean).join('.')),
        message: 'unknown field',
      }));
    }
    return [{ field: field(path), message: issue.message }];
  });
}

/**
 * A 400 naming each bad field; or, when a value is over a size limit, a 413 naming those
 * fields; or, when a range is wider than allowed, a 400 RANGE_TOO_LARGE naming it.
 */
export function validationError(error: z.ZodError, root?: string): ParleyError {
  const large = error.issues.filter(isTooLarge);
  const range = error.issues.filter(isRangeTooLarge);
  const [code, issues]: [ErrorCode, z.core.$ZodIssue[]] = large.length
    ? ['PAYLOAD_TOO_LARGE', large]
    : range.length
      ? ['RANGE_TOO_LARGE', range]
      : ['VALIDATION_FAILED', error.issues];
  const errors = issueErrors(issues, root);
  const detail = errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  return new ParleyError(code, detail, { errors });
}

import { ERROR_CODES, ParleyError, type ErrorCode, type FieldError } from '@parley/contracts';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  retryable: boolean;
  instance?: string;
  errors?: FieldError[];
}

export const problemType = (code: string) => `urn:parley:problem:${code.toLowerCase().replaceAll('_', '-')}`;

export function toProblem(error: ParleyError, instance?: string): Problem {
  const known = ERROR_CODES[error.code as ErrorCode];
  return {
    type: problemType(error.code),
    title: known?.title ?? 'Error',
    status: error.status,
    detail: error.detail,
    code: error.code,
    retryable: error.retryable,
    ...(instance ? { instance } : {}),
    ...(error.errors ? { errors: error.errors } : {}),
  };
}

/** Maps what Fastify or Nest throw on their own (bad JSON, body too large, unknown route) to a problem. */
export function fromFrameworkError(error: unknown): ParleyError | undefined {
  if (error instanceof ParleyError) return error;
  const e = error as {
    statusCode?: number;
    status?: number;
    code?: string;
    message?: string;
    getStatus?: () => number;
  };
  const status = e.getStatus?.() ?? e.statusCode ?? e.status;
  if (!status || status >= 500) return undefined;
  const message = e.message ?? 'bad request';
  switch (status) {
    case 400:
      return new ParleyError(
        'BAD_REQUEST',
        e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ? 'the JSON body is empty' : message,
      );
    case 401:
      return new ParleyError('UNAUTHENTICATED', message);
    case 403:
      return new ParleyError('FORBIDDEN', message);
    case 404:
      return new ParleyError('NOT_FOUND', message);
    case 413:
      return new ParleyError('PAYLOAD_TOO_LARGE', 'the request body is larger than 1 MiB');
    case 414:
      return new ParleyError('URI_TOO_LONG', 'a path parameter is longer than the gateway reads');
    case 415:
      return new ParleyError('UNSUPPORTED_MEDIA_TYPE', message);
    case 429:
      return new ParleyError('RATE_LIMITED', message, { retryable: true });
    default:
      return new ParleyError('BAD_REQUEST', message);
  }
}

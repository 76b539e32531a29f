import { Catch, Inject, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ParleyError } from '@parley/contracts';
import { LOGGER, type Logger } from '@parley/kit';
import { clientAddress } from './client-address';
import { fromFrameworkError, toProblem } from './problem';
import { queryFieldNames } from './query-fields';

/** Every error leaves the gateway as application/problem+json. */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  constructor(@Inject(LOGGER) private readonly logger: Logger) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    void sendProblem(reply, request, error, this.logger);
  }
}

export async function sendProblem(
  reply: FastifyReply,
  request: FastifyRequest,
  error: unknown,
  logger: Logger | undefined,
): Promise<void> {
  let problem = fromFrameworkError(error);
  if (problem) queryFieldNames(request, problem);
  if (!problem) {
    logger?.error({ err: error, url: request.url, client: clientAddress(request) }, 'request failed');
    problem = new ParleyError('INTERNAL', 'internal error');
  } else if (problem.status >= 500) {
    logger?.warn(
      { code: problem.code, detail: problem.detail, url: request.url, client: clientAddress(request) },
      'upstream problem',
    );
  }
  if (problem.code === 'UNAUTHENTICATED' || problem.code === 'INVALID_CREDENTIALS') {
    void reply.header('www-authenticate', 'Bearer');
  }
  if (problem.retryAfter !== undefined) void reply.header('retry-after', String(problem.retryAfter));
  if (problem.code === 'PAYLOAD_TOO_LARGE') lingerForRefusedBody(request, reply);
  await reply
    .status(problem.status)
    .header('content-type', 'application/problem+json')
    .send(toProblem(problem, request.url.split('?')[0]));
}

/** Most bytes of a refused body read and dropped so that its sender gets the 413. */
export const LINGERING_BODY_BYTES = 16 * 1024 * 1024;

/**
 * Fastify refuses a body over the limit from its declared length, before reading it, and closes
 * the connection after its answer. A client still sending the body then meets a reset instead
 * of the 413 (Node's fetch: `EPIPE`), the more often the larger the body. As a web server's
 * lingering close does, a body declared at most LINGERING_BODY_BYTES long is read and dropped
 * instead (Node does so for an unread request once its answer is sent), on a connection kept
 * open: the client finishes sending and reads its 413. A larger or unannounced one still closes.
 */
function lingerForRefusedBody(request: FastifyRequest, reply: FastifyReply): void {
  if (reply.getHeader('connection') !== 'close') return;
  const declared = Number(request.headers['content-length']);
  // Node drains an answered request only if nothing consumes it (not flowing, not paused by a
  // reader): otherwise the connection would wait on a body no one reads.
  if (Number.isSafeInteger(declared) && declared <= LINGERING_BODY_BYTES && request.raw.readableFlowing === null) {
    reply.removeHeader('connection');
  }
}

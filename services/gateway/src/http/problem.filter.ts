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
  await reply
    .status(problem.status)
    .header('content-type', 'application/problem+json')
    .send(toProblem(problem, request.url.split('?')[0]));
}

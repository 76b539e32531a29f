import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Principal } from '@parley/contracts';

/** What the caller authenticated with: live streams check it again while they stay open. */
export type Credential =
  { kind: 'token'; token: string; /** ms since the epoch */ expiresAt?: number } | { kind: 'key'; key: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    credential?: Credential;
  }
}

/** The authenticated caller, set by the AuthGuard. */
export const Caller = createParamDecorator((_: unknown, ctx: ExecutionContext): Principal => {
  const principal = ctx.switchToHttp().getRequest<FastifyRequest>().principal;
  if (!principal) throw new Error('route has no authenticated principal: is it marked public?');
  return principal;
});

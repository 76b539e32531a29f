import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { ParleyError } from '@parley/contracts';
import { IS_PUBLIC } from '@parley/kit';
import { API_ROUTE, type ApiRouteSpec } from '../http/api-route';
import { KeyVerifier } from './key-verifier';
import { RateLimiter } from './rate-limiter';
import { TokenVerifier } from './token-verifier';

/** Every route but the public ones (health, metrics, docs, login) needs credentials. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(TokenVerifier) private readonly tokens: TokenVerifier,
    @Inject(KeyVerifier) private readonly keys: KeyVerifier,
    @Inject(RateLimiter) private readonly limiter: RateLimiter,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    const spec = this.reflector.get<ApiRouteSpec | undefined>(API_ROUTE, context.getHandler());
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC, targets) || spec?.public) return true;
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const token = bearerToken(request) ?? (spec?.queryToken ? queryToken(request) : undefined);
    const apiKey = request.headers['x-api-key'];
    if (token) {
      const { principal, expiresAt } = await this.tokens.check(token);
      request.principal = principal;
      request.credential = { kind: 'token', token, expiresAt };
    } else if (typeof apiKey === 'string' && apiKey) {
      const bot = await this.keys.verify(apiKey);
      request.principal = { type: 'bot', id: bot.bot_id };
      request.credential = { kind: 'key', key: apiKey };
    } else {
      throw new ParleyError('UNAUTHENTICATED', 'send Authorization: Bearer <token> or X-API-Key: <key>');
    }
    await this.limiter.take(request.principal);
    if (spec?.admin && !(request.principal.type === 'user' && request.principal.is_admin)) {
      throw new ParleyError('FORBIDDEN', 'this needs an administrator');
    }
    return true;
  }
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header) {
    const [scheme, value] = header.split(' ');
    return scheme?.toLowerCase() === 'bearer' && value ? value.trim() : undefined;
  }
  return undefined;
}

/** Browsers cannot set headers on EventSource: stream routes also take `?access_token=`. */
function queryToken(request: FastifyRequest): string | undefined {
  const value = (request.query as Record<string, unknown> | undefined)?.access_token;
  return typeof value === 'string' && value ? value : undefined;
}

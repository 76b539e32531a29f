import { Inject, Injectable } from '@nestjs/common';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet } from 'jose';
import { AccessRpc, ParleyError, type UserPrincipal } from '@parley/contracts';
import { RpcClient } from '@parley/kit';

const STATE_TTL_MS = 1000;

/**
 * Verifies access tokens with the access service's public keys (fetched once, refetched
 * when a token names an unknown key), then checks the user is still enabled: a disabled
 * user's token stops working within a second.
 */
@Injectable()
export class TokenVerifier {
  private keys: Promise<ReturnType<typeof createLocalJWKSet>> | undefined;
  private readonly states = new Map<string, { enabled: boolean; is_admin: boolean; until: number }>();

  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  private jwks(refresh = false) {
    if (refresh || !this.keys) {
      this.keys = this.rpc
        .call(AccessRpc.jwks, {})
        .then((set) => createLocalJWKSet(set as unknown as JSONWebKeySet))
        .catch((error: unknown) => {
          this.keys = undefined;
          throw error;
        });
    }
    return this.keys;
  }

  async verify(token: string): Promise<UserPrincipal> {
    const userId = await this.subject(token);
    const state = await this.state(userId);
    if (!state?.enabled) throw new ParleyError('UNAUTHENTICATED', 'the user is disabled or no longer exists');
    return { type: 'user', id: userId, is_admin: state.is_admin };
  }

  private async subject(token: string, retried = false): Promise<string> {
    try {
      const { payload } = await jwtVerify(token, await this.jwks(), {
        issuer: 'parley-access',
        audience: 'parley',
        algorithms: ['EdDSA'],
      });
      if (!payload.sub) throw new ParleyError('UNAUTHENTICATED', 'token has no subject');
      return payload.sub;
    } catch (error) {
      if (error instanceof ParleyError) throw error;
      if (error instanceof joseErrors.JWKSNoMatchingKey && !retried) {
        await this.jwks(true);
        return this.subject(token, true);
      }
      if (error instanceof joseErrors.JWTExpired)
        throw new ParleyError('UNAUTHENTICATED', 'the access token has expired');
      throw new ParleyError('UNAUTHENTICATED', 'the access token is not valid');
    }
  }

  private async state(userId: string) {
    const cached = this.states.get(userId);
    if (cached && cached.until > Date.now()) return cached;
    const state = await this.rpc.call(AccessRpc.principalState, { user_id: userId });
    if (!state) {
      this.states.delete(userId);
      return null;
    }
    const entry = { enabled: state.enabled, is_admin: state.is_admin, until: Date.now() + STATE_TTL_MS };
    if (this.states.size > 50_000) this.states.clear();
    this.states.set(userId, entry);
    return entry;
  }
}

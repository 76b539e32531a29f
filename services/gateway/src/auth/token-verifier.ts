import { Inject, Injectable } from '@nestjs/common';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet } from 'jose';
import { AccessRpc, ParleyError, type UserPrincipal } from '@parley/contracts';
import { RpcClient } from '@parley/kit';

/** A user's state is used for at most this long after it was asked for. */
const STATE_TTL_MS = 1000;
/** Past this age it is asked for again in the background, while the answer in hand is used. */
const STATE_REFRESH_MS = 500;
/** Tokens whose signature was checked, kept until they expire: a signature holds for a token's life. */
const VERIFIED_TOKENS = 10_000;

interface UserState {
  enabled: boolean;
  is_admin: boolean;
}

/** A user's state as last asked for, and the next answer when one is on its way. */
interface KnownState {
  answer: Promise<UserState | null>;
  askedAt: number;
  next?: { answer: Promise<UserState | null>; askedAt: number };
}

/**
 * Verifies access tokens with the access service's public keys (fetched once, refetched
 * when a token names an unknown key), then checks the user is still enabled: a disabled
 * user's token stops working within a second.
 */
@Injectable()
export class TokenVerifier {
  private keys: Promise<ReturnType<typeof createLocalJWKSet>> | undefined;
  private readonly states = new Map<string, KnownState>();
  /** Oldest first (insertion order), so the first entry is the one to drop when full. */
  private readonly verified = new Map<string, { sub: string; exp?: number }>();

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
    return (await this.check(token)).principal;
  }

  /** The token's user, and when the token expires (ms since the epoch; undefined: never). */
  async check(token: string): Promise<{ principal: UserPrincipal; expiresAt?: number }> {
    const { sub: userId, exp } = await this.subject(token);
    const state = await this.state(userId);
    if (!state?.enabled) throw new ParleyError('UNAUTHENTICATED', 'the user is disabled or no longer exists');
    return {
      principal: { type: 'user', id: userId, is_admin: state.is_admin },
      ...(exp !== undefined ? { expiresAt: exp * 1000 } : {}),
    };
  }

  /**
   * The token's subject and expiry. Checking an EdDSA signature is most of the gateway's work
   * per request, so a token seen before is taken from `verified` until it expires; whether its
   * user is still enabled is asked apart (`state`), so disabling still takes effect within a second.
   */
  private async subject(token: string): Promise<{ sub: string; exp?: number }> {
    const known = this.verified.get(token);
    if (known && (known.exp === undefined || known.exp * 1000 > Date.now())) return known;
    if (known) this.verified.delete(token);
    const checked = await this.verifySignature(token);
    if (this.verified.size >= VERIFIED_TOKENS) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    this.verified.set(token, checked);
    return checked;
  }

  private async verifySignature(token: string, retried = false): Promise<{ sub: string; exp?: number }> {
    try {
      const { payload } = await jwtVerify(token, await this.jwks(), {
        issuer: 'parley-access',
        audience: 'parley',
        algorithms: ['EdDSA'],
      });
      if (!payload.sub) throw new ParleyError('UNAUTHENTICATED', 'token has no subject');
      return { sub: payload.sub, exp: payload.exp };
    } catch (error) {
      if (error instanceof ParleyError) throw error;
      if (error instanceof joseErrors.JWKSNoMatchingKey && !retried) {
        await this.jwks(true);
        return this.verifySignature(token, true);
      }
      if (error instanceof joseErrors.JWTExpired)
        throw new ParleyError('UNAUTHENTICATED', 'the access token has expired');
      throw new ParleyError('UNAUTHENTICATED', 'the access token is not valid');
    }
  }

  /**
   * A user's state, asked for at most once per half second and used for at most a second
   * after it was asked for, so disabling a user takes effect within a second. The next answer
   * is asked for while the one in hand is still good: a request waits for the access service
   * only when a user had none for a second, not every second for every user.
   */
  private state(userId: string): Promise<UserState | null> {
    const now = Date.now();
    const known = this.states.get(userId);
    if (known && now - known.askedAt < STATE_TTL_MS) {
      if (!known.next && now - known.askedAt >= STATE_REFRESH_MS) this.askAhead(userId, known);
      return known.answer;
    }
    // The answer in hand is too old; one asked for since is not, though it may still be on its way.
    if (known?.next && now - known.next.askedAt < STATE_TTL_MS) return known.next.answer;
    return this.ask(userId);
  }

  private ask(userId: string): Promise<UserState | null> {
    const answer = this.lookUp(userId).catch((error: unknown) => {
      if (this.states.get(userId)?.answer === answer) this.states.delete(userId);
      throw error;
    });
    if (this.states.size > 50_000) this.states.clear();
    this.states.set(userId, { answer, askedAt: Date.now() });
    return answer;
  }

  /** Asks again for a state still in use; the answer takes its place when it comes. */
  private askAhead(userId: string, known: KnownState): void {
    const next = { answer: this.lookUp(userId), askedAt: Date.now() };
    known.next = next;
    next.answer.then(
      () => {
        if (this.states.get(userId) === known) this.states.set(userId, next);
      },
      () => {
        // The answer in hand stays until it is too old; then a request asks again.
        if (known.next === next) known.next = undefined;
      },
    );
  }

  private lookUp(userId: string): Promise<UserState | null> {
    return this.rpc
      .call(AccessRpc.principalState, { user_id: userId })
      .then((s) => (s ? { enabled: s.enabled, is_admin: s.is_admin } : null));
  }
}

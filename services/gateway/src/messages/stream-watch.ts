import { Inject, Injectable } from '@nestjs/common';
import { ParleyError, SessionRpc, type Principal } from '@parley/contracts';
import { LOGGER, RpcClient, type Logger } from '@parley/kit';
import { KeyVerifier } from '../auth/key-verifier';
import type { Credential } from '../auth/principal';
import { TokenVerifier } from '../auth/token-verifier';
import { GATEWAY_CONFIG, type GatewayConfig } from '../config';

/** The longest delay a Node timer takes; a token living longer is caught by the periodic check. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Keeps a live stream honest: every STREAM_RECHECK_SECONDS it checks again that the caller's
 * credential still holds (a user not disabled, a token not expired, a key not revoked, a bot
 * not disabled) and that the caller may still read the session, and a timer ends the stream
 * when its access token expires. A definite refusal ends the stream; a check that could not be
 * made (a service away) is tried again at the next interval.
 */
@Injectable()
export class StreamWatch {
  constructor(
    @Inject(TokenVerifier) private readonly tokens: TokenVerifier,
    @Inject(KeyVerifier) private readonly keys: KeyVerifier,
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** Whether `credential` still lets its holder read the session: undefined if so, else why not. */
  async refusal(credential: Credential, sessionId: string): Promise<ParleyError | undefined> {
    try {
      let actor: Principal;
      if (credential.kind === 'token') {
        actor = (await this.tokens.check(credential.token)).principal;
      } else {
        actor = { type: 'bot', id: (await this.keys.verify(credential.key)).bot_id };
      }
      await this.rpc.call(SessionRpc.get, { actor, id: sessionId });
      return undefined;
    } catch (error) {
      if (error instanceof ParleyError && !error.retryable && error.status < 500) return error;
      this.logger.warn(
        { err: error instanceof Error ? error.message : String(error), session: sessionId },
        'could not check a live stream again; trying at the next interval',
      );
      return undefined;
    }
  }

  /**
   * Calls `end` once, with the reason, when the stream must close. Returns the function that
   * stops watching (call it when the stream closes for any other reason).
   */
  watch(credential: Credential, sessionId: string, end: (why: ParleyError) => void): () => void {
    let stopped = false;
    let checking = false;
    let expiry: NodeJS.Timeout | undefined;
    const stop = () => {
      stopped = true;
      clearInterval(recheck);
      clearTimeout(expiry);
    };
    const finish = (why: ParleyError) => {
      if (stopped) return;
      stop();
      end(why);
    };
    const recheck = setInterval(() => {
      if (checking || stopped) return;
      checking = true;
      void this.refusal(credential, sessionId)
        .then((why) => why && finish(why))
        .finally(() => {
          checking = false;
        });
    }, this.config.STREAM_RECHECK_SECONDS * 1000);
    const untilExpiry = credential.kind === 'token' && credential.expiresAt ? credential.expiresAt - Date.now() : 0;
    if (untilExpiry > 0 && untilExpiry <= MAX_TIMER_MS) {
      expiry = setTimeout(
        () => finish(new ParleyError('UNAUTHENTICATED', 'the access token has expired')),
        untilExpiry,
      );
    }
    return stop;
  }
}

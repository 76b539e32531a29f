import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import { AccessControlRpc, ParleyError, RedisKeys } from '@parley/contracts';
import { KIT_OPTIONS, REDIS, RpcClient, type KitOptions } from '@parley/kit';

/** How long a verified key is trusted without asking again; a change in access drops it at once. */
const KEY_TTL_SECONDS = 30;

export interface BotIdentity {
  bot_id: string;
  name: string;
  key_id: string;
}

/**
 * Verifies bot API keys with the access service, caching the answer in Redis under the
 * access epoch: any change to bots or keys bumps the epoch, so a revoked key is refused on
 * the next request on every gateway instance. Redis being away means asking every time.
 */
@Injectable()
export class KeyVerifier {
  constructor(
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
  ) {}

  async verify(apiKey: string): Promise<BotIdentity> {
    if (apiKey.length > 200) throw new ParleyError('UNAUTHENTICATED', 'the API key is not valid');
    const prefix = this.options.config.NATS_SUBJECT_PREFIX;
    const hash = createHash('sha256').update(apiKey).digest('base64url');
    let cacheKey: string | undefined;
    try {
      const epoch = (await this.redis.get(RedisKeys.accessEpoch(prefix))) ?? '0';
      cacheKey = RedisKeys.gatewayKey(prefix, epoch, hash);
      const hit = await this.redis.get(cacheKey);
      if (hit) return JSON.parse(hit) as BotIdentity;
    } catch {
      cacheKey = undefined;
    }
    const info = await this.rpc.call(AccessControlRpc.verifyKey, { api_key: apiKey });
    const identity = { bot_id: info.bot_id, name: info.name, key_id: info.key_id };
    if (cacheKey) {
      const untilExpiry = info.expires_at
        ? Math.floor((Date.parse(info.expires_at) - Date.now()) / 1000)
        : KEY_TTL_SECONDS;
      const ttl = Math.min(KEY_TTL_SECONDS, untilExpiry);
      if (ttl > 0) await this.redis.set(cacheKey, JSON.stringify(identity), 'EX', ttl).catch(() => undefined);
    }
    return identity;
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { encodeUser, fmtCreds } from '@nats-io/jwt';
import { createUser, fromPublic, fromSeed } from '@nats-io/nkeys';
import {
  BOT_MAX_PAYLOAD,
  ParleyError,
  botInboxPrefix,
  botPermissions,
  type NatsCredentials,
  type Principal,
} from '@parley/contracts';
import { ACCESS_CONFIG, type AccessConfig } from '../config';
import { PermissionsService } from '../permissions/permissions.service';
import { BotEntity } from './bot.entities';

/**
 * Mints short-lived NATS user credentials for a bot (NATS in JWT/operator mode): a user JWT
 * signed with the account's signing key, allowed to publish only the bot's own usage and
 * activity subjects and the quota check, to receive only on its own inbox prefix, with a
 * 64 KiB payload limit. Nothing is stored: the bot renews with its API key before expiry.
 */
@Injectable()
export class NatsCredentialsService {
  private readonly account: { publicKey: string; signingSeed: Uint8Array } | undefined;

  constructor(
    @Inject(ACCESS_CONFIG) private readonly config: AccessConfig,
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(PermissionsService) private readonly permissions: PermissionsService,
  ) {
    const seed = config.NATS_ACCOUNT_SIGNING_SEED;
    const account = config.NATS_ACCOUNT_PUBLIC_KEY;
    if (seed && account) {
      // Both are checked at start: a wrong key is a configuration error, not a failed request.
      fromSeed(new TextEncoder().encode(seed));
      fromPublic(account);
      this.account = { publicKey: account, signingSeed: new TextEncoder().encode(seed) };
    }
  }

  async mint(actor: Principal, botId: string, ttlSeconds: number): Promise<NatsCredentials> {
    if (!this.account) {
      throw new ParleyError(
        'NATS_CREDENTIALS_UNAVAILABLE',
        'this deployment does not run NATS with JWT accounts (NATS_ACCOUNT_SIGNING_SEED is not set)',
      );
    }
    await this.authorize(actor, botId);
    const prefix = this.config.NATS_SUBJECT_PREFIX;
    const permissions = botPermissions(botId, prefix);
    const user = createUser();
    const expires = Math.floor(Date.now() / 1000) + ttlSeconds;
    const jwt = await encodeUser(
      `bot-${botId}`,
      user,
      this.account.publicKey,
      {
        pub: { allow: permissions.publish },
        sub: { allow: permissions.subscribe },
        payload: BOT_MAX_PAYLOAD,
      },
      { exp: expires, signer: fromSeed(this.account.signingSeed) },
    );
    return {
      creds: new TextDecoder().decode(fmtCreds(jwt, user)),
      public_key: user.getPublicKey(),
      expires_at: new Date(expires * 1000).toISOString(),
      publish: permissions.publish,
      subscribe: permissions.subscribe,
      inbox_prefix: botInboxPrefix(botId),
    };
  }

  /** The bot itself, or a user who may manage it; and only while the bot is enabled. */
  private async authorize(actor: Principal, botId: string): Promise<void> {
    const bot = await this.orm.em.fork().findOne(BotEntity, { id: botId });
    if (actor.type === 'bot') {
      if (actor.id !== botId || !bot) throw new ParleyError('NOT_FOUND', `bot ${botId} not found`);
    } else {
      const read =
        bot && (await this.permissions.check({ subject: actor, action: 'read', resource: { type: 'bot', id: botId } }));
      if (!bot || !read?.allowed) throw new ParleyError('NOT_FOUND', `bot ${botId} not found`);
      const manage = await this.permissions.check({
        subject: actor,
        action: 'manage',
        resource: { type: 'bot', id: botId },
      });
      if (!manage.allowed) throw new ParleyError('FORBIDDEN', `you may not manage bot ${botId}`);
    }
    if (!bot.enabled) throw new ParleyError('FORBIDDEN', `bot ${botId} is disabled: it gets no new credentials`);
  }
}

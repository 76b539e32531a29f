import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { createHash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import {
  ParleyError,
  type AccessControlRpc,
  type Page,
  type PageRequest,
  type Permission,
  type Principal,
} from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { AccessChanges } from '../changes';
import { pageOf } from '../paging';
import { PermissionsService } from '../permissions/permissions.service';
import { RolesRepository } from '../roles/roles.repository';
import { ApiKeyEntity, BotEntity, type ApiKey, type Bot } from './bot.entities';
import { BOTS, BOT_KEYS, BotsRepository, type BotVisibility } from './bots.repository';

type BotView = z.infer<typeof AccessControlRpc.getBot.response>;
type KeyView = z.infer<typeof AccessControlRpc.createKey.response>;
type KeyListItem = z.infer<typeof AccessControlRpc.listKeys.response>['items'][number];
type BotInfo = z.infer<typeof AccessControlRpc.verifyKey.response>;

/** Keys look like `prl_<8 hex>_<43 base64url>`; the first part is the visible prefix. */
const KEY_PREFIX = 'prl_';
export const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');
const LAST_USED_RESOLUTION_MS = 60_000;

export function botView(b: Bot): BotView {
  return {
    id: b.id,
    name: b.name,
    description: b.description ?? null,
    enabled: b.enabled,
    owner_id: b.ownerId,
    created_at: b.createdAt.toISOString(),
  };
}

function keyListItem(k: ApiKey): KeyListItem {
  return {
    id: k.id,
    prefix: k.prefix,
    created_at: k.createdAt.toISOString(),
    last_used_at: k.lastUsedAt ? k.lastUsedAt.toISOString() : null,
    expires_at: k.expiresAt ? k.expiresAt.toISOString() : null,
    revoked: !!k.revokedAt,
  };
}

@Injectable()
export class BotsService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(AccessChanges) private readonly changes: AccessChanges,
    @Inject(PermissionsService) private readonly permissions: PermissionsService,
    @Inject(BotsRepository) private readonly bots: BotsRepository,
    @Inject(RolesRepository) private readonly roles: RolesRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  private newKey(em: EntityManager, botId: string, expiresAt: Date | null): { entity: ApiKey; secret: string } {
    const prefix = `${KEY_PREFIX}${randomBytes(4).toString('hex')}`;
    const secret = `${prefix}_${randomBytes(32).toString('base64url')}`;
    const entity = em.create(ApiKeyEntity, {
      id: uuidv7(),
      botId,
      prefix,
      keyHash: hashKey(secret),
      createdAt: new Date(),
      lastUsedAt: null,
      expiresAt,
      revokedAt: null,
    });
    return { entity, secret };
  }

  async create(
    actor: Principal,
    name: string,
    description?: string,
  ): Promise<BotView & { api_key: string; api_key_id: string }> {
    if (actor.type !== 'user') throw new ParleyError('FORBIDDEN', 'a bot cannot create bots');
    const em = this.orm.em.fork();
    const now = new Date();
    const { bot, key } = await em.transactional(async (tx) => {
      const created = tx.create(BotEntity, {
        id: uuidv7(),
        name,
        description: description ?? null,
        enabled: true,
        ownerId: actor.id,
        createdAt: now,
        updatedAt: now,
      });
      const made = this.newKey(tx, created.id, null);
      this.changes.record(tx, 'bot', created.id);
      return { bot: created, key: made };
    });
    await this.changes.committed();
    return { ...botView(bot), api_key: key.secret, api_key_id: key.entity.id };
  }

  /** The bot if the actor may do `action` on it: unknown or unreadable is 404, readable but not enough is 403. */
  private async authorized(actor: Principal, id: string, action: Permission): Promise<Bot> {
    const bot = await this.orm.em.fork().findOne(BotEntity, { id });
    const read =
      bot && (await this.permissions.check({ subject: actor, action: 'read', resource: { type: 'bot', id } }));
    if (!bot || !read?.allowed) throw new ParleyError('NOT_FOUND', `bot ${id} not found`);
    if (action !== 'read') {
      const decision = await this.permissions.check({ subject: actor, action, resource: { type: 'bot', id } });
      if (!decision.allowed) throw new ParleyError('FORBIDDEN', `you may not ${action} bot ${id}`);
    }
    return bot;
  }

  async get(actor: Principal, id: string): Promise<BotView> {
    return botView(await this.authorized(actor, id, 'read'));
  }

  async list(actor: Principal, page: PageRequest): Promise<Page<BotView>> {
    let visible: BotVisibility = { all: true };
    if (actor.type === 'bot') {
      visible = { id: actor.id };
    } else if (!actor.is_admin) {
      const ids = await this.roles.grantedBotIds(actor.id);
      if (!ids.includes('*')) visible = { ownerId: actor.id, ids };
    }
    return pageOf(this.keyset, BOTS, page, { actor }, this.bots.pages(visible), { view: botView, key: (b) => [b.id] });
  }

  async update(
    actor: Principal,
    id: string,
    patch: { name?: string; description?: string | null; enabled?: boolean },
  ): Promise<BotView> {
    await this.authorized(actor, id, 'manage');
    const em = this.orm.em.fork();
    const bot = await em.transactional(async (tx) => {
      const b = await tx.findOneOrFail(BotEntity, { id });
      if (patch.name !== undefined) b.name = patch.name;
      if (patch.description !== undefined) b.description = patch.description;
      if (patch.enabled !== undefined) b.enabled = patch.enabled;
      b.updatedAt = new Date();
      this.changes.record(tx, 'bot', id);
      return b;
    });
    await this.changes.committed();
    return botView(bot);
  }

  /** Disables the bot and revokes every key. */
  async remove(actor: Principal, id: string): Promise<void> {
    await this.authorized(actor, id, 'manage');
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      await this.bots.disable(tx, id, new Date());
      this.changes.record(tx, 'bot', id);
    });
    await this.changes.committed();
  }

  async createKey(actor: Principal, id: string, expiresAt?: string): Promise<KeyView> {
    await this.authorized(actor, id, 'manage');
    const em = this.orm.em.fork();
    const made = await em.transactional(async (tx) => {
      const key = this.newKey(tx, id, expiresAt ? new Date(expiresAt) : null);
      this.changes.record(tx, 'key', key.entity.id);
      return key;
    });
    await this.changes.committed();
    return {
      id: made.entity.id,
      prefix: made.entity.prefix,
      api_key: made.secret,
      expires_at: made.entity.expiresAt ? made.entity.expiresAt.toISOString() : null,
    };
  }

  async listKeys(actor: Principal, id: string, page: PageRequest): Promise<Page<KeyListItem>> {
    await this.authorized(actor, id, 'manage');
    return pageOf(this.keyset, BOT_KEYS, page, { actor, filters: { bot_id: id } }, this.bots.keyPages(id), {
      view: keyListItem,
      key: (k) => [k.id],
    });
  }

  async revokeKey(actor: Principal, id: string, keyId: string): Promise<void> {
    await this.authorized(actor, id, 'manage');
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      const changed = await this.bots.revokeKey(tx, id, keyId);
      if (changed === 0) throw new ParleyError('NOT_FOUND', `key ${keyId} not found`);
      this.changes.record(tx, 'key', keyId);
    });
    await this.changes.committed();
  }

  /** The bot a key belongs to, if the key is live: not revoked, not expired, its bot enabled. */
  async verifyKey(secret: string): Promise<BotInfo> {
    const row = await this.bots.keyByHash(hashKey(secret));
    if (
      !row ||
      row.revoked_at ||
      !row.enabled ||
      (row.expires_at && new Date(row.expires_at).getTime() <= Date.now())
    ) {
      throw new ParleyError('UNAUTHENTICATED', 'the API key is not valid');
    }
    const lastUsed = row.last_used_at ? new Date(row.last_used_at).getTime() : 0;
    if (Date.now() - lastUsed > LAST_USED_RESOLUTION_MS) {
      await this.bots.touchKey(row.id);
    }
    return {
      bot_id: row.bot_id,
      name: row.name,
      key_id: row.id,
      expires_at: row.expires_at ? new Date(row.expires_at).toISOString() : null,
    };
  }

  /** Which of these bots exist, and whether each is enabled: the usage service checks every event's bot. */
  async statuses(ids: string[]): Promise<{ id: string; enabled: boolean }[]> {
    return this.bots.statuses(ids);
  }

  async botName(id: string): Promise<string | null> {
    const bot = await this.orm.em.fork().findOne(BotEntity, { id });
    return bot?.name ?? null;
  }
}

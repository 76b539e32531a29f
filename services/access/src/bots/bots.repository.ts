import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager, type FilterQuery } from '@mikro-orm/postgresql';
import { entityReads, uuidKeyed, type ListReads } from '../paging';
import { ApiKeyEntity, BotEntity, type ApiKey, type Bot } from './bot.entities';

/** Bots by id. */
export const BOTS = uuidKeyed('bots');
/** A bot's keys by id. */
export const BOT_KEYS = uuidKeyed('bot-keys');

/** Which bots a list shows: every one, one, or those a user owns or holds a grant on. */
export type BotVisibility = { all: true } | { id: string } | { ownerId: string; ids: string[] };

export interface KeyLookup {
  id: string;
  bot_id: string;
  name: string;
  enabled: boolean;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

/** The SQL of bots and their API keys. Reads use a fresh fork; writes that belong to a caller's transaction take it. */
@Injectable()
export class BotsRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  pages(visible: BotVisibility): ListReads<Bot> {
    const where: FilterQuery<Bot> =
      'all' in visible
        ? {}
        : 'id' in visible
          ? { id: visible.id }
          : { $or: [{ ownerId: visible.ownerId }, { id: { $in: visible.ids } }] };
    return entityReads(() => this.em(), BotEntity, where, BOTS);
  }

  keyPages(botId: string): ListReads<ApiKey> {
    return entityReads(() => this.em(), ApiKeyEntity, { botId }, BOT_KEYS);
  }

  /** Disables the bot and revokes its live keys. */
  async disable(tx: EntityManager, id: string, now: Date): Promise<void> {
    await tx.nativeUpdate(BotEntity, { id }, { enabled: false, updatedAt: now });
    await tx.nativeUpdate(ApiKeyEntity, { botId: id, revokedAt: null }, { revokedAt: now });
  }

  /** How many keys were revoked (0: no such key of this bot). */
  revokeKey(tx: EntityManager, botId: string, keyId: string): Promise<number> {
    return tx.nativeUpdate(ApiKeyEntity, { id: keyId, botId }, { revokedAt: new Date() });
  }

  /** The key with this hash and its bot, whatever their state. */
  async keyByHash(keyHash: string): Promise<KeyLookup | undefined> {
    const [row] = await this.em().execute<KeyLookup[]>(
      `select k.id, k.bot_id, b.name, b.enabled, k.expires_at, k.revoked_at, k.last_used_at
       from api_keys k join bots b on b.id = k.bot_id where k.key_hash = ?`,
      [keyHash],
    );
    return row;
  }

  async touchKey(id: string): Promise<void> {
    await this.em().execute('update api_keys set last_used_at = now() where id = ?', [id]);
  }

  /** Which of these bots exist, and whether each is enabled. */
  statuses(ids: string[]): Promise<{ id: string; enabled: boolean }[]> {
    return this.em().execute<{ id: string; enabled: boolean }[]>('select id, enabled from bots where id in (?)', [ids]);
  }

  /** Whether the bot is enabled; undefined if there is no such bot. */
  async enabled(id: string): Promise<boolean | undefined> {
    const [bot] = await this.em().execute<{ enabled: boolean }[]>('select enabled from bots where id = ?', [id]);
    return bot?.enabled;
  }

  /** The bot's owner; undefined if there is no such bot. */
  async ownerOf(id: string): Promise<string | undefined> {
    const [bot] = await this.em().execute<{ owner_id: string }[]>('select owner_id from bots where id = ?', [id]);
    return bot?.owner_id;
  }

  async allIds(): Promise<string[]> {
    return (await this.em().execute<{ id: string }[]>('select id from bots')).map((b) => b.id);
  }

  async idsOwnedBy(userId: string): Promise<string[]> {
    const rows = await this.em().execute<{ id: string }[]>('select id from bots where owner_id = ?', [userId]);
    return rows.map((b) => b.id);
  }

  /** The bots the user owns and those (or "*") their roles grant anything on. */
  async idsOwnedOrGranted(userId: string): Promise<string[]> {
    const rows = await this.em().execute<{ id: string }[]>(
      `select id::text from bots where owner_id = ?
       union
       select g.resource_id from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and g.resource_type = 'bot'`,
      [userId, userId],
    );
    return rows.map((r) => r.id);
  }
}

import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

export const BotEntity = defineEntity({
  name: 'Bot',
  tableName: 'bots',
  properties: {
    id: p.uuid().primary(),
    name: p.string().length(100),
    description: p.text().nullable(),
    enabled: p.boolean().default(true),
    ownerId: p.uuid().index('bots_owner_idx'),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
});
export type Bot = InferEntity<typeof BotEntity>;

/** A bot's API key: 32 random bytes shown once, kept as SHA-256 (a slow hash adds nothing to a high-entropy key). */
export const ApiKeyEntity = defineEntity({
  name: 'ApiKey',
  tableName: 'api_keys',
  properties: {
    id: p.uuid().primary(),
    botId: p.uuid().index('api_keys_bot_idx'),
    prefix: p.string().length(16),
    keyHash: p.string().length(64).unique('api_keys_hash_key'),
    createdAt: p.datetime(),
    lastUsedAt: p.datetime().nullable(),
    expiresAt: p.datetime().nullable(),
    revokedAt: p.datetime().nullable(),
  },
});
export type ApiKey = InferEntity<typeof ApiKeyEntity>;

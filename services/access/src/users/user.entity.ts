import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

export const UserEntity = defineEntity({
  name: 'User',
  tableName: 'users',
  properties: {
    id: p.uuid().primary(),
    username: p.string().length(64),
    email: p.string().length(320).nullable(),
    passwordHash: p.text(),
    enabled: p.boolean().default(true),
    isAdmin: p.boolean().default(false),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  },
  uniques: [{ name: 'users_username_key', properties: ['username'] }],
});
export type User = InferEntity<typeof UserEntity>;

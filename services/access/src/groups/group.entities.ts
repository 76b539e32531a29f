import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

export const GroupEntity = defineEntity({
  name: 'Group',
  tableName: 'groups',
  properties: {
    id: p.uuid().primary(),
    name: p.string().length(100),
    remark: p.text().nullable(),
    isDefault: p.boolean().default(false),
    createdAt: p.datetime(),
  },
  uniques: [{ name: 'groups_name_key', properties: ['name'] }],
  indexes: [
    {
      name: 'groups_one_default',
      expression: 'create unique index "groups_one_default" on "groups" ("is_default") where "is_default"',
    },
  ],
});
export type Group = InferEntity<typeof GroupEntity>;

export const MembershipEntity = defineEntity({
  name: 'Membership',
  tableName: 'memberships',
  properties: {
    groupId: p.uuid().primary(),
    userId: p.uuid().primary(),
    isGroupAdmin: p.boolean().default(false),
    createdAt: p.datetime(),
  },
  indexes: [{ name: 'memberships_user_idx', properties: ['userId', 'isGroupAdmin'] }],
});
export type Membership = InferEntity<typeof MembershipEntity>;

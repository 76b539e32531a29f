import { defineEntity, p, type InferEntity } from '@mikro-orm/postgresql';

export const RoleEntity = defineEntity({
  name: 'Role',
  tableName: 'roles',
  properties: {
    id: p.uuid().primary(),
    name: p.string().length(100),
    createdAt: p.datetime(),
  },
  uniques: [{ name: 'roles_name_key', properties: ['name'] }],
});
export type Role = InferEntity<typeof RoleEntity>;

export const UserRoleEntity = defineEntity({
  name: 'UserRole',
  tableName: 'user_roles',
  properties: {
    userId: p.uuid().primary(),
    roleId: p.uuid().primary(),
    createdAt: p.datetime(),
  },
  indexes: [{ name: 'user_roles_role_idx', properties: ['roleId'] }],
});
export type UserRole = InferEntity<typeof UserRoleEntity>;

/** A role's permission on one resource, or on every resource of a type (`resource_id` "*"). */
export const RoleGrantEntity = defineEntity({
  name: 'RoleGrant',
  tableName: 'role_grants',
  properties: {
    roleId: p.uuid().primary(),
    resourceType: p.string().length(16).primary(),
    resourceId: p.string().length(36).primary(),
    permission: p.string().length(8),
  },
  indexes: [{ name: 'role_grants_resource_idx', properties: ['resourceType', 'resourceId', 'roleId'] }],
});
export type RoleGrant = InferEntity<typeof RoleGrantEntity>;

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { entityReads, uuidKeyed, type ListReads } from '../paging';
import { RoleEntity, RoleGrantEntity, UserRoleEntity, type Role, type RoleGrant } from './role.entities';

/** Roles by id. */
export const ROLES = uuidKeyed('roles');

/** The strongest permission among the grants `g` as a number (read 1, write 2, manage 3; none 0). */
const RANK_SQL = `max(case g.permission when 'read' then 1 when 'write' then 2 when 'manage' then 3 else 0 end)`;

/** A grant on one resource of a type, or on all of them ("*"). */
const TARGET_SQL = {
  session: `(g.resource_type = 'session' and g.resource_id in (?, '*'))`,
  bot: `(g.resource_type = 'bot' and g.resource_id in (?, '*'))`,
} as const;

/**
 * The SQL of roles, their grants and who holds them. Reads use a fresh fork; writes that
 * belong to a caller's transaction take it.
 */
@Injectable()
export class RolesRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  async exists(id: string): Promise<boolean> {
    return (await this.em().count(RoleEntity, { id })) > 0;
  }

  pages(): ListReads<Role> {
    return entityReads(() => this.em(), RoleEntity, {}, ROLES);
  }

  grantsOf(roleId: string): Promise<RoleGrant[]> {
    return this.em().find(RoleGrantEntity, { roleId }, { orderBy: { resourceType: 'asc', resourceId: 'asc' } });
  }

  /** Replaces every grant of the role with these. */
  async replaceGrants(tx: EntityManager, roleId: string, grants: Omit<RoleGrant, 'roleId'>[]): Promise<void> {
    await tx.nativeDelete(RoleGrantEntity, { roleId });
    if (grants.length > 0) {
      await tx.insertMany(
        RoleGrantEntity,
        grants.map((g) => ({ roleId, ...g })),
      );
    }
  }

  async assign(tx: EntityManager, userId: string, roleId: string): Promise<void> {
    await tx.execute(
      `insert into user_roles (user_id, role_id, created_at) values (?, ?, now()) on conflict do nothing`,
      [userId, roleId],
    );
  }

  /** How many assignments went (0 or 1). */
  unassign(tx: EntityManager, userId: string, roleId: string): Promise<number> {
    return tx.nativeDelete(UserRoleEntity, { userId, roleId });
  }

  /** Takes every role from the user. */
  async unassignAll(tx: EntityManager, userId: string): Promise<void> {
    await tx.nativeDelete(UserRoleEntity, { userId });
  }

  async roleNamesOf(userId: string): Promise<string[]> {
    const rows = await this.em().execute<{ name: string }[]>(
      'select r.name from user_roles ur join roles r on r.id = ur.role_id where ur.user_id = ? order by r.name',
      [userId],
    );
    return rows.map((r) => r.name);
  }

  /**
   * The strongest permission any of the user's roles grants on any of these targets: each a
   * resource type and an id, also matched by a grant on "*".
   */
  async rankOn(userId: string, targets: { type: keyof typeof TARGET_SQL; id: string }[]): Promise<number> {
    const [row] = await this.em().execute<{ rank: number | null }[]>(
      `select ${RANK_SQL} as rank from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and (${targets.map((t) => TARGET_SQL[t.type]).join(' or ')})`,
      [userId, ...targets.map((t) => t.id)],
    );
    return Number(row?.rank ?? 0);
  }

  /** The strongest permission the user's roles grant on every session (`resource_id` "*"). */
  async rankOnEverySession(userId: string): Promise<number> {
    const [row] = await this.em().execute<{ rank: number | null }[]>(
      `select ${RANK_SQL} as rank from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and g.resource_type = 'session' and g.resource_id = '*'`,
      [userId],
    );
    return Number(row?.rank ?? 0);
  }

  /** The bots (or "*") the user's roles grant anything on. */
  async grantedBotIds(userId: string): Promise<string[]> {
    const rows = await this.em().execute<{ resource_id: string }[]>(
      `select distinct g.resource_id from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and g.resource_type = 'bot'`,
      [userId],
    );
    return rows.map((g) => g.resource_id);
  }

  /** Every resource the user's roles grant anything on. */
  grantedResources(userId: string): Promise<{ resource_type: string; resource_id: string }[]> {
    return this.em().execute(
      `select distinct g.resource_type, g.resource_id from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ?`,
      [userId],
    );
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, UniqueConstraintViolationException } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import { ParleyError, type Grant, type Page, type PageRequest, type Principal } from '@parley/contracts';
import { AccessChanges } from '../changes';
import { pageByKey } from '../paging';
import { UserEntity } from '../users/user.entity';
import { requireAdmin } from '../require-admin';
import { RoleEntity, RoleGrantEntity, UserRoleEntity } from './role.entities';

@Injectable()
export class RolesService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(AccessChanges) private readonly changes: AccessChanges,
  ) {}

  async create(actor: Principal, name: string): Promise<{ id: string; name: string }> {
    requireAdmin(actor);
    const em = this.orm.em.fork();
    const role = em.create(RoleEntity, { id: uuidv7(), name, createdAt: new Date() });
    try {
      await em.flush();
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException)
        throw new ParleyError('CONFLICT', `role "${name}" already exists`);
      throw error;
    }
    return { id: role.id, name: role.name };
  }

  async list(actor: Principal, page: PageRequest): Promise<Page<{ id: string; name: string }>> {
    requireAdmin(actor);
    return pageByKey(this.orm.em.fork(), RoleEntity, {}, 'id', page, (r) => ({ id: r.id, name: r.name }));
  }

  private async requireRole(id: string): Promise<void> {
    if (!(await this.orm.em.fork().count(RoleEntity, { id })))
      throw new ParleyError('NOT_FOUND', `role ${id} not found`);
  }

  async grants(actor: Principal, roleId: string): Promise<{ role_id: string; grants: Grant[] }> {
    requireAdmin(actor);
    await this.requireRole(roleId);
    const rows = await this.orm.em
      .fork()
      .find(RoleGrantEntity, { roleId }, { orderBy: { resourceType: 'asc', resourceId: 'asc' } });
    return {
      role_id: roleId,
      grants: rows.map((g) => ({
        resource_type: g.resourceType as Grant['resource_type'],
        resource_id: g.resourceId,
        permission: g.permission as Grant['permission'],
      })),
    };
  }

  /** Replaces the role's grants; a resource named twice keeps its strongest permission. */
  async replaceGrants(
    actor: Principal,
    roleId: string,
    grants: Grant[],
  ): Promise<{ role_id: string; grants: Grant[] }> {
    requireAdmin(actor);
    await this.requireRole(roleId);
    const rank = { read: 1, write: 2, manage: 3 } as const;
    const strongest = new Map<string, Grant>();
    for (const g of grants) {
      const key = `${g.resource_type}:${g.resource_id}`;
      const seen = strongest.get(key);
      if (!seen || rank[g.permission] > rank[seen.permission]) strongest.set(key, g);
    }
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      await tx.nativeDelete(RoleGrantEntity, { roleId });
      if (strongest.size > 0) {
        await tx.insertMany(
          RoleGrantEntity,
          [...strongest.values()].map((g) => ({
            roleId,
            resourceType: g.resource_type,
            resourceId: g.resource_id,
            permission: g.permission,
          })),
        );
      }
      this.changes.record(tx, 'grant', roleId);
    });
    await this.changes.committed();
    return this.grants(actor, roleId);
  }

  async assign(actor: Principal, userId: string, roleId: string): Promise<{ user_id: string; role_id: string }> {
    requireAdmin(actor);
    await this.requireRole(roleId);
    const em = this.orm.em.fork();
    if (!(await em.count(UserEntity, { id: userId }))) throw new ParleyError('NOT_FOUND', `user ${userId} not found`);
    await em.transactional(async (tx) => {
      await tx.execute(
        `insert into user_roles (user_id, role_id, created_at) values (?, ?, now()) on conflict do nothing`,
        [userId, roleId],
      );
      this.changes.record(tx, 'role', `${userId}:${roleId}`);
    });
    await this.changes.committed();
    return { user_id: userId, role_id: roleId };
  }

  async unassign(actor: Principal, userId: string, roleId: string): Promise<void> {
    requireAdmin(actor);
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      const removed = await tx.nativeDelete(UserRoleEntity, { userId, roleId });
      if (removed === 0) throw new ParleyError('NOT_FOUND', `user ${userId} does not have role ${roleId}`);
      this.changes.record(tx, 'role', `${userId}:${roleId}`);
    });
    await this.changes.committed();
  }

  async roleNamesOf(userId: string): Promise<string[]> {
    const rows = await this.orm.em
      .fork()
      .execute<{ name: string }[]>(
        'select r.name from user_roles ur join roles r on r.id = ur.role_id where ur.user_id = ? order by r.name',
        [userId],
      );
    return rows.map((r) => r.name);
  }
}

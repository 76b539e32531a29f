import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, UniqueConstraintViolationException } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import { ParleyError, type Grant, type Page, type PageRequest, type Principal } from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { AccessChanges } from '../changes';
import { pageOf } from '../paging';
import { UsersRepository } from '../users/users.repository';
import { requireAdmin } from '../require-admin';
import { RoleEntity } from './role.entities';
import { ROLES, RolesRepository } from './roles.repository';

@Injectable()
export class RolesService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(AccessChanges) private readonly changes: AccessChanges,
    @Inject(RolesRepository) private readonly roles: RolesRepository,
    @Inject(UsersRepository) private readonly users: UsersRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
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
    return pageOf(this.keyset, ROLES, page, { actor }, this.roles.pages(), {
      view: (r) => ({ id: r.id, name: r.name }),
      key: (r) => [r.id],
    });
  }

  private async requireRole(id: string): Promise<void> {
    if (!(await this.roles.exists(id))) throw new ParleyError('NOT_FOUND', `role ${id} not found`);
  }

  async grants(actor: Principal, roleId: string): Promise<{ role_id: string; grants: Grant[] }> {
    requireAdmin(actor);
    await this.requireRole(roleId);
    const rows = await this.roles.grantsOf(roleId);
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
      await this.roles.replaceGrants(
        tx,
        roleId,
        [...strongest.values()].map((g) => ({
          resourceType: g.resource_type,
          resourceId: g.resource_id,
          permission: g.permission,
        })),
      );
      this.changes.record(tx, 'grant', roleId);
    });
    await this.changes.committed();
    return this.grants(actor, roleId);
  }

  async assign(actor: Principal, userId: string, roleId: string): Promise<{ user_id: string; role_id: string }> {
    requireAdmin(actor);
    await this.requireRole(roleId);
    if (!(await this.users.exists(userId))) throw new ParleyError('NOT_FOUND', `user ${userId} not found`);
    await this.orm.em.fork().transactional(async (tx) => {
      await this.roles.assign(tx, userId, roleId);
      this.changes.record(tx, 'role', `${userId}:${roleId}`);
    });
    await this.changes.committed();
    return { user_id: userId, role_id: roleId };
  }

  async unassign(actor: Principal, userId: string, roleId: string): Promise<void> {
    requireAdmin(actor);
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      const removed = await this.roles.unassign(tx, userId, roleId);
      if (removed === 0) throw new ParleyError('NOT_FOUND', `user ${userId} does not have role ${roleId}`);
      this.changes.record(tx, 'role', `${userId}:${roleId}`);
    });
    await this.changes.committed();
  }

  async roleNamesOf(userId: string): Promise<string[]> {
    return this.roles.roleNamesOf(userId);
  }
}

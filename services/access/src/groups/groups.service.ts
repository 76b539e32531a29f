import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, UniqueConstraintViolationException } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import { ParleyError, type AccessControlRpc, type Page, type PageRequest, type Principal } from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { AccessChanges } from '../changes';
import { pageOf } from '../paging';
import { UserEntity } from '../users/user.entity';
import { UsersRepository } from '../users/users.repository';
import { requireAdmin } from '../require-admin';
import { GroupEntity, type Group } from './group.entities';
import { GROUPS, GROUP_MEMBERS, GroupsRepository } from './groups.repository';

type GroupView = z.infer<typeof AccessControlRpc.createGroup.response>;
type MemberView = z.infer<typeof AccessControlRpc.putMember.response>;

export const DEFAULT_GROUP_NAME = 'default';

export function groupView(g: Group): GroupView {
  return {
    id: g.id,
    name: g.name,
    remark: g.remark ?? null,
    is_default: g.isDefault,
    created_at: g.createdAt.toISOString(),
  };
}

@Injectable()
export class GroupsService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(AccessChanges) private readonly changes: AccessChanges,
    @Inject(GroupsRepository) private readonly groups: GroupsRepository,
    @Inject(UsersRepository) private readonly users: UsersRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  /** The group every new user joins; created once, whoever starts first. */
  async ensureDefault(): Promise<Group> {
    const existing = await this.groups.findDefault();
    if (existing) return existing;
    await this.groups.insertDefault(uuidv7(), DEFAULT_GROUP_NAME, 'every user joins this group');
    const created = await this.groups.findDefault();
    if (!created) throw new Error('the default group was not stored');
    return created;
  }

  async create(actor: Principal, name: string, remark?: string): Promise<GroupView> {
    requireAdmin(actor);
    const em = this.orm.em.fork();
    const group = em.create(GroupEntity, {
      id: uuidv7(),
      name,
      remark: remark ?? null,
      isDefault: false,
      createdAt: new Date(),
    });
    await this.flushUnique(em, `group "${name}" already exists`);
    return groupView(group);
  }

  async list(actor: Principal, page: PageRequest): Promise<Page<GroupView>> {
    requireAdmin(actor);
    return pageOf(this.keyset, GROUPS, page, { actor }, this.groups.pages(), { view: groupView, key: (g) => [g.id] });
  }

  async update(actor: Principal, id: string, patch: { name?: string; remark?: string | null }): Promise<GroupView> {
    requireAdmin(actor);
    const em = this.orm.em.fork();
    const group = await em.findOne(GroupEntity, { id });
    if (!group) throw new ParleyError('NOT_FOUND', `group ${id} not found`);
    if (patch.name !== undefined) group.name = patch.name;
    if (patch.remark !== undefined) group.remark = patch.remark;
    await this.flushUnique(em, `group "${patch.name}" already exists`);
    return groupView(group);
  }

  async remove(actor: Principal, id: string): Promise<void> {
    requireAdmin(actor);
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      const group = await tx.findOne(GroupEntity, { id });
      if (!group) throw new ParleyError('NOT_FOUND', `group ${id} not found`);
      if (group.isDefault) throw new ParleyError('CONFLICT', 'the default group cannot be deleted');
      await this.groups.removeAllMembers(tx, id);
      tx.remove(group);
      this.changes.record(tx, 'membership', id);
    });
    await this.changes.committed();
  }

  /** Admins, and the group's own admins, manage its members; anyone else is refused (403). */
  private async requireGroupManager(actor: Principal, groupId: string): Promise<void> {
    if (actor.type === 'user' && actor.is_admin) {
      if (!(await this.groups.exists(groupId))) throw new ParleyError('NOT_FOUND', `group ${groupId} not found`);
      return;
    }
    if (actor.type === 'user' && (await this.groups.isGroupAdmin(groupId, actor.id))) return;
    throw new ParleyError('FORBIDDEN', 'this needs an administrator or an admin of the group');
  }

  async members(actor: Principal, groupId: string, page: PageRequest): Promise<Page<MemberView>> {
    await this.requireGroupManager(actor, groupId);
    const memberships = await pageOf(
      this.keyset,
      GROUP_MEMBERS,
      page,
      { actor, filters: { group_id: groupId } },
      this.groups.memberPages(groupId),
      { view: (m) => m, key: (m) => [m.userId] },
    );
    const names = await this.users.usernames(memberships.items.map((m) => m.userId));
    return {
      ...memberships,
      items: memberships.items.map((m) => ({
        user_id: m.userId,
        username: names.get(m.userId) ?? '',
        is_group_admin: m.isGroupAdmin,
      })),
    };
  }

  async putMember(actor: Principal, groupId: string, userId: string, isGroupAdmin: boolean): Promise<MemberView> {
    await this.requireGroupManager(actor, groupId);
    const em = this.orm.em.fork();
    const user = await em.findOne(UserEntity, { id: userId });
    if (!user) throw new ParleyError('NOT_FOUND', `user ${userId} not found`);
    await em.transactional(async (tx) => {
      await this.groups.putMember(tx, groupId, userId, isGroupAdmin);
      this.changes.record(tx, 'membership', `${groupId}:${userId}`);
    });
    await this.changes.committed();
    return { user_id: userId, username: user.username, is_group_admin: isGroupAdmin };
  }

  async removeMember(actor: Principal, groupId: string, userId: string): Promise<void> {
    await this.requireGroupManager(actor, groupId);
    const em = this.orm.em.fork();
    await em.transactional(async (tx) => {
      const removed = await this.groups.removeMember(tx, groupId, userId);
      if (removed === 0) throw new ParleyError('NOT_FOUND', `user ${userId} is not in group ${groupId}`);
      this.changes.record(tx, 'membership', `${groupId}:${userId}`);
    });
    await this.changes.committed();
  }

  async groupsOf(userId: string): Promise<{ id: string; name: string; is_group_admin: boolean }[]> {
    return this.groups.groupsOf(userId);
  }

  private async flushUnique(em: ReturnType<MikroORM['em']['fork']>, message: string): Promise<void> {
    try {
      await em.flush();
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException) throw new ParleyError('CONFLICT', message);
      throw error;
    }
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { entityReads, uuidKeyed, type ListReads } from '../paging';
import { GroupEntity, MembershipEntity, type Group, type Membership } from './group.entities';

/** Groups by id. */
export const GROUPS = uuidKeyed('groups');
/** A group's members by user id. */
export const GROUP_MEMBERS = uuidKeyed('group-members', 'user_id', 'userId');

/** The SQL of groups and memberships. Reads use a fresh fork; writes that belong to a caller's transaction take it. */
@Injectable()
export class GroupsRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  findDefault(): Promise<Group | null> {
    return this.em().findOne(GroupEntity, { isDefault: true });
  }

  /** Creates the default group unless one exists (a unique index allows one). */
  async insertDefault(id: string, name: string, remark: string): Promise<void> {
    await this.em().execute(
      `insert into groups (id, name, remark, is_default, created_at) values (?, ?, ?, true, now()) on conflict do nothing`,
      [id, name, remark],
    );
  }

  async exists(id: string): Promise<boolean> {
    return (await this.em().count(GroupEntity, { id })) > 0;
  }

  pages(): ListReads<Group> {
    return entityReads(() => this.em(), GroupEntity, {}, GROUPS);
  }

  memberPages(groupId: string): ListReads<Membership> {
    return entityReads(() => this.em(), MembershipEntity, { groupId }, GROUP_MEMBERS);
  }

  async isGroupAdmin(groupId: string, userId: string): Promise<boolean> {
    return (await this.em().findOne(MembershipEntity, { groupId, userId, isGroupAdmin: true })) !== null;
  }

  /** Adds the user to the group, or changes whether they administer it. */
  async putMember(tx: EntityManager, groupId: string, userId: string, isGroupAdmin: boolean): Promise<void> {
    await tx.execute(
      `insert into memberships (group_id, user_id, is_group_admin, created_at) values (?, ?, ?, now())
         on conflict (group_id, user_id) do update set is_group_admin = excluded.is_group_admin`,
      [groupId, userId, isGroupAdmin],
    );
  }

  /** How many memberships went (0 or 1). */
  removeMember(tx: EntityManager, groupId: string, userId: string): Promise<number> {
    return tx.nativeDelete(MembershipEntity, { groupId, userId });
  }

  async removeAllMembers(tx: EntityManager, groupId: string): Promise<void> {
    await tx.nativeDelete(MembershipEntity, { groupId });
  }

  /** Takes the user out of every group. */
  async removeFromAll(tx: EntityManager, userId: string): Promise<void> {
    await tx.nativeDelete(MembershipEntity, { userId });
  }

  groupsOf(userId: string): Promise<{ id: string; name: string; is_group_admin: boolean }[]> {
    return this.em().execute(
      `select g.id, g.name, m.is_group_admin from memberships m join groups g on g.id = m.group_id
       where m.user_id = ? order by g.name`,
      [userId],
    );
  }

  /** Whether the user administers any of these groups. */
  async administersAny(userId: string, groupIds: string[]): Promise<boolean> {
    const rows = await this.em().execute(
      'select 1 from memberships where user_id = ? and is_group_admin and group_id in (?) limit 1',
      [userId, groupIds],
    );
    return rows.length > 0;
  }

  /** The groups the user administers. */
  async administeredBy(userId: string): Promise<string[]> {
    const rows = await this.em().execute<{ group_id: string }[]>(
      'select group_id from memberships where user_id = ? and is_group_admin',
      [userId],
    );
    return rows.map((r) => r.group_id);
  }

  /** The groups the admin administers that the member belongs to. */
  async administeredWith(adminId: string, memberId: string): Promise<string[]> {
    const rows = await this.em().execute<{ group_id: string }[]>(
      `select mine.group_id from memberships mine join memberships theirs on theirs.group_id = mine.group_id
         where mine.user_id = ? and mine.is_group_admin and theirs.user_id = ?`,
      [adminId, memberId],
    );
    return rows.map((r) => r.group_id);
  }
}

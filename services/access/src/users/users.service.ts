import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/postgresql';
import * as argon2 from 'argon2';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import { ParleyError, type AccessRpc, type Page, type Principal, type User as UserView } from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { randomBytes } from 'node:crypto';
import { RefreshTokensRepository } from '../auth/refresh-tokens.repository';
import { LoginAddressesRepository } from '../auth/login-addresses.repository';
import { AccessChanges } from '../changes';
import { GroupsService } from '../groups/groups.service';
import { GroupsRepository } from '../groups/groups.repository';
import { MembershipEntity } from '../groups/group.entities';
import { pageOf } from '../paging';
import { RolesRepository } from '../roles/roles.repository';
import { UserEntity, type User } from './user.entity';
import { USERS, UsersRepository } from './users.repository';
import { requireAdmin } from '../require-admin';

type CreateRequest = z.output<typeof AccessRpc.createUser.request>;
type ListRequest = z.output<typeof AccessRpc.listUsers.request>;
type UpdateRequest = z.output<typeof AccessRpc.updateUser.request>;

export function toView(u: User): UserView {
  return {
    id: u.id,
    username: u.username,
    email: u.email ?? null,
    enabled: u.enabled,
    is_admin: u.isAdmin,
    created_at: u.createdAt.toISOString(),
  };
}

export const hashPassword = (password: string) => argon2.hash(password, { type: argon2.argon2id });

@Injectable()
export class UsersService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(GroupsService) private readonly groups: GroupsService,
    @Inject(AccessChanges) private readonly changes: AccessChanges,
    @Inject(UsersRepository) private readonly users: UsersRepository,
    @Inject(GroupsRepository) private readonly groupsRepo: GroupsRepository,
    @Inject(RolesRepository) private readonly roles: RolesRepository,
    @Inject(RefreshTokensRepository) private readonly tokens: RefreshTokensRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
    @Inject(LoginAddressesRepository) private readonly loginAddresses: LoginAddressesRepository,
  ) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  /** A new user, who joins the default group. */
  async create(req: Omit<CreateRequest, 'actor'> & { is_admin?: boolean }): Promise<UserView> {
    const now = new Date();
    const passwordHash = await hashPassword(req.password);
    const defaultGroup = await this.groups.ensureDefault();
    const em = this.em();
    let user: User;
    try {
      user = await em.transactional(async (tx) => {
        const created = tx.create(UserEntity, {
          id: uuidv7(),
          username: req.username,
          email: req.email ?? null,
          passwordHash,
          enabled: true,
          isAdmin: req.is_admin ?? false,
          createdAt: now,
          updatedAt: now,
        });
        tx.create(MembershipEntity, {
          groupId: defaultGroup.id,
          userId: created.id,
          isGroupAdmin: false,
          createdAt: now,
        });
        this.changes.record(tx, 'user', created.id);
        return created;
      });
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException) {
        throw new ParleyError('USERNAME_TAKEN', `username "${req.username}" already exists`);
      }
      throw error;
    }
    await this.changes.committed();
    return toView(user);
  }

  async list(req: ListRequest): Promise<Page<UserView>> {
    requireAdmin(req.actor);
    return pageOf(this.keyset, USERS, req.page, { actor: req.actor, filters: { q: req.q } }, this.users.pages(req.q), {
      view: toView,
      key: (u) => [u.id],
    });
  }

  async update(req: UpdateRequest): Promise<UserView> {
    requireAdmin(req.actor);
    const em = this.em();
    const user = await em.findOne(UserEntity, { id: req.id });
    if (!user) throw new ParleyError('NOT_FOUND', `user ${req.id} not found`);
    const { patch } = req;
    if (req.actor.id === user.id && (patch.enabled === false || patch.is_admin === false)) {
      throw new ParleyError('CONFLICT', 'an administrator cannot disable or demote themself');
    }
    if (patch.email !== undefined) user.email = patch.email;
    if (patch.enabled !== undefined) user.enabled = patch.enabled;
    if (patch.is_admin !== undefined) user.isAdmin = patch.is_admin;
    if (patch.password !== undefined) user.passwordHash = await hashPassword(patch.password);
    user.updatedAt = new Date();
    await em.transactional(async (tx) => {
      tx.persist(user);
      if (patch.enabled === false || patch.password !== undefined) await this.tokens.revokeAllOf(tx, user.id);
      this.changes.record(tx, 'user', user.id);
    });
    await this.changes.committed();
    return toView(user);
  }

  /** Disables and anonymises the user; their sessions stay (readable by admins). */
  async remove(actor: Principal, id: string): Promise<void> {
    requireAdmin(actor);
    if (actor.id === id) throw new ParleyError('CONFLICT', 'an administrator cannot delete themself');
    const em = this.em();
    const hash = await hashPassword(randomBytes(32).toString('hex'));
    await em.transactional(async (tx) => {
      const user = await tx.findOne(UserEntity, { id });
      if (!user) throw new ParleyError('NOT_FOUND', `user ${id} not found`);
      user.username = `deleted-${id}`.slice(0, 64);
      user.email = null;
      user.passwordHash = hash;
      user.enabled = false;
      user.isAdmin = false;
      user.updatedAt = new Date();
      await this.tokens.revokeAllOf(tx, id);
      await this.groupsRepo.removeFromAll(tx, id);
      await this.roles.unassignAll(tx, id);
      await this.loginAddresses.forget(tx, id);
      this.changes.record(tx, 'user', id);
    });
    await this.changes.committed();
  }

  async changePassword(actor: Principal, current: string, next: string): Promise<void> {
    if (actor.type !== 'user') throw new ParleyError('FORBIDDEN', 'bots have no password');
    const em = this.em();
    const user = await em.findOne(UserEntity, { id: actor.id });
    if (!user) throw new ParleyError('UNAUTHENTICATED', 'the user no longer exists');
    if (!(await argon2.verify(user.passwordHash, current))) {
      throw new ParleyError('VALIDATION_FAILED', 'current_password: does not match', {
        errors: [{ field: 'current_password', message: 'does not match' }],
      });
    }
    user.passwordHash = await hashPassword(next);
    user.updatedAt = new Date();
    await em.transactional(async (tx) => {
      tx.persist(user);
      await this.tokens.revokeAllOf(tx, user.id);
    });
  }

  async findByUsername(username: string): Promise<User | null> {
    return this.users.findByUsername(username);
  }

  async findById(id: string): Promise<User | null> {
    return this.em().findOne(UserEntity, { id });
  }

  async anyAdmin(): Promise<boolean> {
    return this.users.anyAdmin();
  }

  async promote(id: string, password: string): Promise<void> {
    await this.users.promote(id, await hashPassword(password));
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { entityReads, uuidKeyed, type ListReads } from '../paging';
import { UserEntity, type User } from './user.entity';

/** Users by id. */
export const USERS = uuidKeyed('users');

/** The users' SQL. Reads use a fresh fork; writes that belong to a caller's transaction take it. */
@Injectable()
export class UsersRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  /** The users whose name contains `q` (as typed: `%`, `_` and `\` match themselves), or all. */
  pages(q?: string): ListReads<User> {
    const where = q ? { username: { $ilike: `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%` } } : {};
    return entityReads(() => this.em(), UserEntity, where, USERS);
  }

  findByUsername(username: string): Promise<User | null> {
    return this.em().findOne(UserEntity, { username });
  }

  async exists(id: string): Promise<boolean> {
    return (await this.em().count(UserEntity, { id })) > 0;
  }

  /** Each of these users' name, for the ones that exist. */
  async usernames(ids: string[]): Promise<Map<string, string>> {
    const users = await this.em().find(UserEntity, { id: { $in: ids } });
    return new Map(users.map((u) => [u.id, u.username]));
  }

  async anyAdmin(): Promise<boolean> {
    return (await this.em().count(UserEntity, { isAdmin: true })) > 0;
  }

  async promote(id: string, passwordHash: string): Promise<void> {
    await this.em().nativeUpdate(
      UserEntity,
      { id },
      { isAdmin: true, enabled: true, passwordHash, updatedAt: new Date() },
    );
  }

  /** Whether the user exists, is enabled and is an admin: the first question of every decision. */
  async state(id: string): Promise<{ enabled: boolean; is_admin: boolean } | undefined> {
    const [user] = await this.em().execute<{ enabled: boolean; is_admin: boolean }[]>(
      'select enabled, is_admin from users where id = ?',
      [id],
    );
    return user;
  }
}

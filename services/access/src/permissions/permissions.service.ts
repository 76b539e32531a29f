import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import type { Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import {
  PERMISSION_RANK,
  type Check,
  type Decision,
  type Permission,
  type Principal,
  type ReadScope,
  type Resource,
  RedisKeys,
} from '@parley/contracts';
import { KIT_OPTIONS, REDIS, type KitOptions } from '@parley/kit';
import { epochKey } from '../changes';

const DECISION_TTL_SECONDS = 30;

const RANK_SQL = `max(case g.permission when 'read' then 1 when 'write' then 2 when 'manage' then 3 else 0 end)`;

const allow = (reason: string): Decision => ({ allowed: true, reason });
const deny = (reason: string): Decision => ({ allowed: false, reason });

/**
 * Who may do what, as API.md says. Deny by default; rights from several sources combine by
 * taking the strongest: admin, owner, group admin (read, sessions in that group), role grants
 * (the highest permission among all the user's roles on the session, its bot, or "*"), and a
 * bot key on its own bot's sessions. Every rule is an indexed lookup, never a scan of policies.
 */
@Injectable()
export class PermissionsService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
  ) {}

  private get prefix(): string {
    return this.options.config.NATS_SUBJECT_PREFIX;
  }

  async check(check: Check): Promise<Decision> {
    const cached = await this.cached(check);
    if (cached.decision) return cached.decision;
    const decision = await this.decide(this.orm.em.fork(), check);
    if (cached.key)
      await this.redis.set(cached.key, JSON.stringify(decision), 'EX', DECISION_TTL_SECONDS).catch(() => undefined);
    return decision;
  }

  async checkBatch(checks: Check[]): Promise<Decision[]> {
    return Promise.all(checks.map((c) => this.check(c)));
  }

  /** Reads the cache under the current epoch; Redis being away means deciding afresh, never guessing. */
  private async cached(check: Check): Promise<{ key?: string; decision?: Decision }> {
    try {
      const epoch = (await this.redis.get(epochKey(this.prefix))) ?? '0';
      const hash = createHash('sha1').update(JSON.stringify(check)).digest('base64url');
      const key = RedisKeys.accessDecision(this.prefix, epoch, hash);
      const hit = await this.redis.get(key);
      return { key, decision: hit ? (JSON.parse(hit) as Decision) : undefined };
    } catch {
      return {};
    }
  }

  async decide(em: EntityManager, { subject, action, resource }: Check): Promise<Decision> {
    if (subject.type === 'bot') return this.decideForBot(em, subject.id, action, resource);
    const [user] = await em.execute<{ enabled: boolean; is_admin: boolean }[]>(
      'select enabled, is_admin from users where id = ?',
      [subject.id],
    );
    if (!user) return deny('unknown user');
    if (!user.enabled) return deny('user disabled');
    if (user.is_admin) return allow('admin');
    const needed = PERMISSION_RANK[action];

    if (resource.type === 'session') {
      if (resource.user_id === subject.id) return allow('owner');
      if (action === 'read' && resource.group_ids.length > 0) {
        const rows = await em.execute(
          'select 1 from memberships where user_id = ? and is_group_admin and group_id in (?) limit 1',
          [subject.id, resource.group_ids],
        );
        if (rows.length > 0) return allow('group admin');
      }
      const rank = await this.grantRank(em, subject.id, resource);
      return rank >= needed ? allow('role grant') : deny(rank > 0 ? 'grant too weak' : 'no right');
    }

    const [bot] = await em.execute<{ owner_id: string }[]>('select owner_id from bots where id = ?', [resource.id]);
    if (!bot) return deny('unknown bot');
    if (bot.owner_id === subject.id) return allow('owner');
    const rank = await this.grantRank(em, subject.id, resource);
    return rank >= needed ? allow('role grant') : deny(rank > 0 ? 'grant too weak' : 'no right');
  }

  private async decideForBot(
    em: EntityManager,
    botId: string,
    action: Permission,
    resource: Resource,
  ): Promise<Decision> {
    const [bot] = await em.execute<{ enabled: boolean }[]>('select enabled from bots where id = ?', [botId]);
    if (!bot?.enabled) return deny('bot disabled or unknown');
    if (resource.type === 'session') {
      return resource.bot_id === botId && action !== 'manage' ? allow('own bot') : deny("not this bot's session");
    }
    return resource.id === botId && action === 'read' ? allow('own bot') : deny('another bot');
  }

  /** The strongest permission any of the user's roles grants on the resource (or its bot, or "*"). */
  private async grantRank(em: EntityManager, userId: string, resource: Resource): Promise<number> {
    const targets: string[] = [];
    const params: unknown[] = [userId];
    if (resource.type === 'session') {
      targets.push(`(g.resource_type = 'session' and g.resource_id in (?, '*'))`);
      params.push(resource.id);
      if (resource.bot_id) {
        targets.push(`(g.resource_type = 'bot' and g.resource_id in (?, '*'))`);
        params.push(resource.bot_id);
      }
    } else {
      targets.push(`(g.resource_type = 'bot' and g.resource_id in (?, '*'))`);
      params.push(resource.id);
    }
    const [row] = await em.execute<{ rank: number | null }[]>(
      `select ${RANK_SQL} as rank from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and (${targets.join(' or ')})`,
      params,
    );
    return Number(row?.rank ?? 0);
  }

  /**
   * How far the subject may list the sessions of a user and/or a bot: all of them, only
   * those in some groups (as their group admin), or none (an empty answer: the caller gets 403).
   */
  async listScope(subject: Principal, userId?: string, botId?: string): Promise<{ all: boolean; group_ids: string[] }> {
    const none = { all: false, group_ids: [] };
    const em = this.orm.em.fork();
    if (subject.type === 'bot') {
      const ownBot = !botId || botId === subject.id;
      return ownBot ? { all: true, group_ids: [] } : none;
    }
    const [user] = await em.execute<{ enabled: boolean; is_admin: boolean }[]>(
      'select enabled, is_admin from users where id = ?',
      [subject.id],
    );
    if (!user?.enabled) return none;
    if (user.is_admin) return { all: true, group_ids: [] };
    if (userId === subject.id) return { all: true, group_ids: [] };
    const [everySession] = await em.execute<{ rank: number | null }[]>(
      `select ${RANK_SQL} as rank from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and g.resource_type = 'session' and g.resource_id = '*'`,
      [subject.id],
    );
    if (Number(everySession?.rank ?? 0) >= 1) return { all: true, group_ids: [] };
    if (botId) {
      const [bot] = await em.execute<{ owner_id: string }[]>('select owner_id from bots where id = ?', [botId]);
      if (
        bot &&
        (bot.owner_id === subject.id || (await this.grantRank(em, subject.id, { type: 'bot', id: botId })) >= 1)
      ) {
        return { all: true, group_ids: [] };
      }
    }
    if (userId) {
      const rows = await em.execute<{ group_id: string }[]>(
        `select mine.group_id from memberships mine join memberships theirs on theirs.group_id = mine.group_id
         where mine.user_id = ? and mine.is_group_admin and theirs.user_id = ?`,
        [subject.id, userId],
      );
      return { all: false, group_ids: rows.map((r) => r.group_id) };
    }
    return none;
  }

  /**
   * The bots whose usage, quota and activity the subject may read: every bot (admin, or a
   * grant on bot "*"), or those it owns or holds a grant on; a bot key reads only itself.
   */
  async botScope(subject: Principal): Promise<{ all: boolean; bot_ids: string[] }> {
    const none = { all: false, bot_ids: [] };
    const em = this.orm.em.fork();
    if (subject.type === 'bot') {
      const [bot] = await em.execute<{ enabled: boolean }[]>('select enabled from bots where id = ?', [subject.id]);
      return bot?.enabled ? { all: false, bot_ids: [subject.id] } : none;
    }
    const [user] = await em.execute<{ enabled: boolean; is_admin: boolean }[]>(
      'select enabled, is_admin from users where id = ?',
      [subject.id],
    );
    if (!user?.enabled) return none;
    if (user.is_admin) return { all: true, bot_ids: [] };
    const rows = await em.execute<{ id: string }[]>(
      `select id::text from bots where owner_id = ?
       union
       select g.resource_id from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ? and g.resource_type = 'bot'`,
      [subject.id, subject.id],
    );
    if (rows.some((r) => r.id === '*')) return { all: true, bot_ids: [] };
    return { all: false, bot_ids: rows.map((r) => r.id) };
  }

  /**
   * Everything the subject may read, as sets a search can filter on without crossing
   * schemas: their own sessions, sessions of groups they administer, sessions of bots they
   * own or hold a grant on, sessions granted one by one; or everything.
   */
  async readScope(subject: Principal): Promise<ReadScope> {
    const em = this.orm.em.fork();
    const none: ReadScope = { all: false, user_id: null, group_ids: [], bot_ids: [], session_ids: [] };
    if (subject.type === 'bot') {
      const [bot] = await em.execute<{ enabled: boolean }[]>('select enabled from bots where id = ?', [subject.id]);
      return bot?.enabled ? { ...none, bot_ids: [subject.id] } : none;
    }
    const [user] = await em.execute<{ enabled: boolean; is_admin: boolean }[]>(
      'select enabled, is_admin from users where id = ?',
      [subject.id],
    );
    if (!user?.enabled) return none;
    if (user.is_admin) return { ...none, all: true };
    const grants = await em.execute<{ resource_type: string; resource_id: string }[]>(
      `select distinct g.resource_type, g.resource_id from user_roles ur join role_grants g on g.role_id = ur.role_id
       where ur.user_id = ?`,
      [subject.id],
    );
    if (grants.some((g) => g.resource_type === 'session' && g.resource_id === '*')) return { ...none, all: true };
    const everyBot = grants.some((g) => g.resource_type === 'bot' && g.resource_id === '*');
    const groups = await em.execute<{ group_id: string }[]>(
      'select group_id from memberships where user_id = ? and is_group_admin',
      [subject.id],
    );
    const bots = everyBot
      ? await em.execute<{ id: string }[]>('select id from bots')
      : await em.execute<{ id: string }[]>('select id from bots where owner_id = ?', [subject.id]);
    const granted = (type: string) =>
      grants.filter((g) => g.resource_type === type && g.resource_id !== '*').map((g) => g.resource_id);
    return {
      all: false,
      user_id: subject.id,
      group_ids: groups.map((g) => g.group_id),
      bot_ids: [...new Set([...bots.map((b) => b.id), ...granted('bot')])],
      session_ids: granted('session'),
    };
  }
}

import { Inject, Injectable } from '@nestjs/common';
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
import { BotsRepository } from '../bots/bots.repository';
import { epochKey } from '../changes';
import { GroupsRepository } from '../groups/groups.repository';
import { RolesRepository } from '../roles/roles.repository';
import { UsersRepository } from '../users/users.repository';

const DECISION_TTL_SECONDS = 30;

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
    @Inject(UsersRepository) private readonly users: UsersRepository,
    @Inject(GroupsRepository) private readonly groups: GroupsRepository,
    @Inject(RolesRepository) private readonly roles: RolesRepository,
    @Inject(BotsRepository) private readonly bots: BotsRepository,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(KIT_OPTIONS) private readonly options: KitOptions,
  ) {}

  private get prefix(): string {
    return this.options.config.NATS_SUBJECT_PREFIX;
  }

  async check(check: Check): Promise<Decision> {
    const cached = await this.cached(check);
    if (cached.decision) return cached.decision;
    const decision = await this.decide(check);
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

  async decide({ subject, action, resource }: Check): Promise<Decision> {
    if (subject.type === 'bot') return this.decideForBot(subject.id, action, resource);
    const user = await this.users.state(subject.id);
    if (!user) return deny('unknown user');
    if (!user.enabled) return deny('user disabled');
    if (user.is_admin) return allow('admin');
    const needed = PERMISSION_RANK[action];

    if (resource.type === 'session') {
      if (resource.user_id === subject.id) return allow('owner');
      if (action === 'read' && resource.group_ids.length > 0) {
        if (await this.groups.administersAny(subject.id, resource.group_ids)) return allow('group admin');
      }
      const rank = await this.grantRank(subject.id, resource);
      return rank >= needed ? allow('role grant') : deny(rank > 0 ? 'grant too weak' : 'no right');
    }

    const owner = await this.bots.ownerOf(resource.id);
    if (!owner) return deny('unknown bot');
    if (owner === subject.id) return allow('owner');
    const rank = await this.grantRank(subject.id, resource);
    return rank >= needed ? allow('role grant') : deny(rank > 0 ? 'grant too weak' : 'no right');
  }

  private async decideForBot(botId: string, action: Permission, resource: Resource): Promise<Decision> {
    if (!(await this.bots.enabled(botId))) return deny('bot disabled or unknown');
    if (resource.type === 'session') {
      return resource.bot_id === botId && action !== 'manage' ? allow('own bot') : deny("not this bot's session");
    }
    return resource.id === botId && action === 'read' ? allow('own bot') : deny('another bot');
  }

  /** The strongest permission any of the user's roles grants on the resource (or its bot, or "*"). */
  private grantRank(userId: string, resource: Resource): Promise<number> {
    if (resource.type === 'bot') return this.roles.rankOn(userId, [{ type: 'bot', id: resource.id }]);
    return this.roles.rankOn(userId, [
      { type: 'session', id: resource.id },
      ...(resource.bot_id ? [{ type: 'bot' as const, id: resource.bot_id }] : []),
    ]);
  }

  /**
   * How far the subject may list the sessions of a user and/or a bot: all of them, only
   * those in some groups (as their group admin), or none (an empty answer: the caller gets 403).
   */
  async listScope(subject: Principal, userId?: string, botId?: string): Promise<{ all: boolean; group_ids: string[] }> {
    const none = { all: false, group_ids: [] };
    if (subject.type === 'bot') {
      const ownBot = !botId || botId === subject.id;
      return ownBot ? { all: true, group_ids: [] } : none;
    }
    const user = await this.users.state(subject.id);
    if (!user?.enabled) return none;
    if (user.is_admin) return { all: true, group_ids: [] };
    if (userId === subject.id) return { all: true, group_ids: [] };
    if ((await this.roles.rankOnEverySession(subject.id)) >= 1) return { all: true, group_ids: [] };
    if (botId) {
      const owner = await this.bots.ownerOf(botId);
      if (owner && (owner === subject.id || (await this.grantRank(subject.id, { type: 'bot', id: botId })) >= 1)) {
        return { all: true, group_ids: [] };
      }
    }
    if (userId) return { all: false, group_ids: await this.groups.administeredWith(subject.id, userId) };
    return none;
  }

  /**
   * The bots whose usage, quota and activity the subject may read: every bot (admin, or a
   * grant on bot "*"), or those it owns or holds a grant on; a bot key reads only itself.
   */
  async botScope(subject: Principal): Promise<{ all: boolean; bot_ids: string[] }> {
    const none = { all: false, bot_ids: [] };
    if (subject.type === 'bot') {
      return (await this.bots.enabled(subject.id)) ? { all: false, bot_ids: [subject.id] } : none;
    }
    const user = await this.users.state(subject.id);
    if (!user?.enabled) return none;
    if (user.is_admin) return { all: true, bot_ids: [] };
    const ids = await this.bots.idsOwnedOrGranted(subject.id);
    if (ids.includes('*')) return { all: true, bot_ids: [] };
    return { all: false, bot_ids: ids };
  }

  /**
   * Everything the subject may read, as sets a search can filter on without crossing
   * schemas: their own sessions, sessions of groups they administer, sessions of bots they
   * own or hold a grant on, sessions granted one by one; or everything.
   */
  async readScope(subject: Principal): Promise<ReadScope> {
    const none: ReadScope = { all: false, user_id: null, group_ids: [], bot_ids: [], session_ids: [] };
    if (subject.type === 'bot') {
      return (await this.bots.enabled(subject.id)) ? { ...none, bot_ids: [subject.id] } : none;
    }
    const user = await this.users.state(subject.id);
    if (!user?.enabled) return none;
    if (user.is_admin) return { ...none, all: true };
    const grants = await this.roles.grantedResources(subject.id);
    if (grants.some((g) => g.resource_type === 'session' && g.resource_id === '*')) return { ...none, all: true };
    const everyBot = grants.some((g) => g.resource_type === 'bot' && g.resource_id === '*');
    const groupIds = await this.groups.administeredBy(subject.id);
    const botIds = everyBot ? await this.bots.allIds() : await this.bots.idsOwnedBy(subject.id);
    const granted = (type: string) =>
      grants.filter((g) => g.resource_type === type && g.resource_id !== '*').map((g) => g.resource_id);
    return {
      all: false,
      user_id: subject.id,
      group_ids: groupIds,
      bot_ids: [...new Set([...botIds, ...granted('bot')])],
      session_ids: granted('session'),
    };
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { LockMode, MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import {
  DomainEvents,
  ParleyError,
  SESSION_PAGE_BYTES,
  type Page,
  type Principal,
  type Session as SessionView,
  type SessionRpc,
} from '@parley/contracts';
import { AccessControlRpc, SessionScopeFenceRpc, type MessageStats, type Permission } from '@parley/contracts';
import { RpcClient, isNoResponders } from '@parley/kit';
import { Keyset, OutboxRelay, addToOutbox } from '@parley/kit/database';
import { SessionEntity, type Session } from './session.entity';
import { SESSIONS, SessionsRepository, type SessionScope } from './sessions.repository';

type CreateRequest = z.output<typeof SessionRpc.create.request>;
type ListRequest = z.output<typeof SessionRpc.list.request>;
type UpdateRequest = z.output<typeof SessionRpc.update.request>;

type Action = 'read' | 'write' | 'delete';

const PERMISSION_OF: Record<Action, Permission> = { read: 'read', write: 'write', delete: 'manage' };

export function toView(s: Session): SessionView {
  return {
    id: s.id,
    user_id: s.userId,
    bot_id: s.botId ?? null,
    title: s.title ?? null,
    status: s.status as SessionView['status'],
    group_ids: s.groupIds ?? [],
    metadata: s.metadata,
    state: s.state,
    message_count: s.messageCount,
    like_count: s.likeCount,
    dislike_count: s.dislikeCount,
    copied_count: s.copiedCount,
    sensitive_status: s.sensitiveStatus as SessionView['sensitive_status'],
    last_message_at: s.lastMessageAt ? s.lastMessageAt.toISOString() : null,
    created_at: s.createdAt.toISOString(),
    updated_at: s.updatedAt.toISOString(),
  };
}

/**
 * The rights that need no question to the access service: owners and admins may do
 * everything, a bot key writes its own bot's sessions. `undefined`: ask access.
 */
export function allowedLocally(actor: Principal, session: Session, action: Action): boolean | undefined {
  if (actor.type === 'user') return actor.is_admin || session.userId === actor.id ? true : undefined;
  return session.botId === actor.id && action !== 'delete' ? true : undefined;
}

@Injectable()
export class SessionsService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(SessionsRepository) private readonly sessions: SessionsRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  private async may(actor: Principal, session: Session, action: Action): Promise<boolean> {
    const local = allowedLocally(actor, session, action);
    if (local !== undefined) return local;
    const decision = await this.rpc.call(AccessControlRpc.check, {
      subject: actor,
      action: PERMISSION_OF[action],
      resource: {
        type: 'session',
        id: session.id,
        user_id: session.userId,
        bot_id: session.botId ?? null,
        group_ids: session.groupIds ?? [],
      },
    });
    return decision.allowed;
  }

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  private event(s: Session, at = new Date()) {
    return {
      session_id: s.id,
      user_id: s.userId,
      bot_id: s.botId ?? null,
      group_ids: s.groupIds ?? [],
      status: s.status as SessionView['status'],
      occurred_at: at.toISOString(),
    };
  }

  /**
   * Before a change to who may write a session commits (its status, its deletion): the
   * message service stops deciding rights from its copy until this change's event, which
   * occurs at `at`, reaches it. If the message service cannot be told (a timeout), the change
   * fails and nothing changed; if none runs at all, the change goes ahead (decision 0023).
   */
  private async fenceMessages(s: Session, at: Date): Promise<void> {
    try {
      await this.rpc.call(SessionScopeFenceRpc, {
        session_id: s.id,
        user_id: s.userId,
        bot_id: s.botId ?? null,
        group_ids: s.groupIds ?? [],
        until: at.toISOString(),
      });
    } catch (error) {
      // No message service runs at all: none can take an append now, and one that starts
      // trusts its copy only once it has caught up with the session events (this one included).
      if (!isNoResponders(error)) throw error;
    }
  }

  async create(req: CreateRequest): Promise<SessionView> {
    const { actor } = req;
    let userId: string;
    let botId = req.bot_id ?? null;
    if (actor.type === 'bot') {
      if (!req.user_id) {
        throw new ParleyError('VALIDATION_FAILED', 'user_id: a bot must name the user it opens the session for', {
          errors: [{ field: 'user_id', message: 'required when a bot creates a session' }],
        });
      }
      if (botId && botId !== actor.id) throw new ParleyError('FORBIDDEN', 'a bot may create sessions only for itself');
      userId = req.user_id;
      botId = actor.id;
    } else {
      if (req.user_id && req.user_id !== actor.id && !actor.is_admin) {
        throw new ParleyError('FORBIDDEN', 'only a bot key or an admin may create a session for another user');
      }
      userId = req.user_id ?? actor.id;
      if (botId) {
        const visible = await this.rpc.call(AccessControlRpc.check, {
          subject: actor,
          action: 'read',
          resource: { type: 'bot', id: botId },
        });
        if (!visible.allowed) throw new ParleyError('NOT_FOUND', `bot ${botId} not found`);
      }
    }
    // The owner's groups at creation decide which group admins may read the session.
    const { group_ids: groupIds } = await this.rpc.call(AccessControlRpc.userGroups, { user_id: userId });
    const now = new Date();
    const em = this.em();
    const session = await em.transactional(async (tx) => {
      const created = tx.create(SessionEntity, {
        id: uuidv7(),
        userId,
        botId,
        title: req.title ?? null,
        status: 'active',
        groupIds,
        metadata: req.metadata ?? {},
        state: req.state ?? {},
        messageCount: 0,
        likeCount: 0,
        dislikeCount: 0,
        copiedCount: 0,
        sensitiveStatus: 'unchecked',
        lastMessageAt: null,
        statsVersion: 0,
        lastActivityAt: now,
        createdAt: now,
        updatedAt: now,
      });
      addToOutbox(tx, DomainEvents.sessionCreated, this.event(created));
      return created;
    });
    this.outbox.kick();
    return toView(session);
  }

  /** The session if the actor may `action` it: unknown or unreadable is 404, readable but not enough is 403. */
  private async load(
    em: EntityManager,
    actor: Principal,
    id: string,
    action: Action,
    { lock = false } = {},
  ): Promise<Session> {
    // A change locks the row, so changes to one session commit in the order of their events.
    const session = await em.findOne(SessionEntity, { id }, lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {});
    if (!session || !(await this.may(actor, session, 'read')))
      throw new ParleyError('NOT_FOUND', `session ${id} not found`);
    if (action !== 'read' && !(await this.may(actor, session, action))) {
      throw new ParleyError('FORBIDDEN', `you may not ${action} session ${id}`);
    }
    return session;
  }

  async get(actor: Principal, id: string): Promise<SessionView> {
    return toView(await this.load(this.em(), actor, id, 'read'));
  }

  /** What another service needs to accept a read or write of the session's messages. */
  async authorize(actor: Principal, id: string, action: Permission) {
    const session = await this.load(this.em(), actor, id, action === 'manage' ? 'delete' : action);
    return {
      id: session.id,
      user_id: session.userId,
      bot_id: session.botId ?? null,
      group_ids: session.groupIds ?? [],
      status: session.status as SessionView['status'],
    };
  }

  /** Applies the message service's counters if they are newer than what the session holds. */
  async applyStats(stats: MessageStats): Promise<void> {
    await this.sessions.applyStats(stats);
  }

  async update(req: UpdateRequest): Promise<SessionView> {
    const em = this.em();
    const session = await em.transactional(async (tx) => {
      const s = await this.load(tx, req.actor, req.id, 'write', { lock: true });
      const { patch } = req;
      const now = new Date();
      if (patch.status !== undefined && patch.status !== s.status) await this.fenceMessages(s, now);
      if (patch.title !== undefined) s.title = patch.title;
      if (patch.status !== undefined) s.status = patch.status;
      if (patch.metadata !== undefined) s.metadata = patch.metadata;
      if (patch.state !== undefined) s.state = patch.state;
      s.updatedAt = now;
      s.lastActivityAt = now;
      addToOutbox(tx, DomainEvents.sessionUpdated, this.event(s, now));
      return s;
    });
    this.outbox.kick();
    return toView(session);
  }

  async remove(actor: Principal, id: string): Promise<{ id: string }> {
    const em = this.em();
    await em.transactional(async (tx) => {
      const s = await this.load(tx, actor, id, 'delete', { lock: true });
      const now = new Date();
      await this.fenceMessages(s, now);
      addToOutbox(tx, DomainEvents.sessionDeleted, this.event(s, now));
      tx.remove(s);
    });
    this.outbox.kick();
    return { id };
  }

  /**
   * Which sessions a list may show. Without user_id or bot_id: the caller's own (a bot key:
   * its bot's). With them: that user's or bot's sessions as far as the caller may read them,
   * all or only those in the groups the caller administers; nothing readable is 403.
   */
  private async scope(req: ListRequest): Promise<SessionScope> {
    const { actor } = req;
    if (actor.type === 'bot') {
      if (req.bot_id && req.bot_id !== actor.id)
        throw new ParleyError('FORBIDDEN', 'a bot may list only its own sessions');
      return { botId: actor.id, userId: req.user_id };
    }
    if (!req.user_id && !req.bot_id) return { userId: actor.id };
    const named: SessionScope = { userId: req.user_id, botId: req.bot_id };
    if (actor.is_admin || req.user_id === actor.id) return named;
    const scope = await this.rpc.call(AccessControlRpc.listScope, {
      subject: actor,
      user_id: req.user_id,
      bot_id: req.bot_id,
    });
    if (scope.all) return named;
    if (scope.group_ids.length === 0) {
      const whose = req.user_id ? `user ${req.user_id}` : `bot ${req.bot_id}`;
      throw new ParleyError('FORBIDDEN', `you may not list the sessions of ${whose}`);
    }
    return { ...named, inGroups: scope.group_ids };
  }

  async list(req: ListRequest): Promise<Page<SessionView>> {
    const scope = await this.scope(req);
    const { actor, page, ...filters } = req;
    if (page.kind === 'offset') {
      const [rows, total] = await this.sessions.listNumbered(scope, filters, {
        offset: (page.page - 1) * page.size,
        limit: page.size,
      });
      return { items: rows.map(toView), total, page: page.page, size: page.size };
    }
    // The cursor is bound to the caller and to every filter as the client sent it.
    return this.keyset.page(
      SESSIONS,
      page,
      { actor, filters },
      (position) => this.sessions.listAfter(scope, filters, position),
      { view: toView, key: (s) => [s.lastActivityAt.toISOString(), s.id], budget: SESSION_PAGE_BYTES },
    );
  }
}

import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager, type FilterQuery } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import {
  DomainEvents,
  ParleyError,
  decodeCursor,
  encodeCursor,
  type Page,
  type Principal,
  type Session as SessionView,
  type SessionRpc,
} from '@parley/contracts';
import { OutboxRelay, addToOutbox } from '@parley/kit';
import { SessionEntity, type Session } from './session.entity';

type CreateRequest = z.output<typeof SessionRpc.create.request>;
type ListRequest = z.output<typeof SessionRpc.list.request>;
type UpdateRequest = z.output<typeof SessionRpc.update.request>;

type Action = 'read' | 'write' | 'delete';

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

/** What a principal may do with a session: its owner and admins everything, a bot its own bot's sessions. */
export function allowed(actor: Principal, session: Session, action: Action): boolean {
  if (actor.type === 'user') return actor.is_admin || session.userId === actor.id;
  return session.botId === actor.id && action !== 'delete';
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

@Injectable()
export class SessionsService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
  ) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  private event(s: Session) {
    return {
      session_id: s.id,
      user_id: s.userId,
      bot_id: s.botId ?? null,
      group_ids: s.groupIds ?? [],
      occurred_at: new Date().toISOString(),
    };
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
    }
    const now = new Date();
    const em = this.em();
    const session = await em.transactional(async (tx) => {
      const created = tx.create(SessionEntity, {
        id: uuidv7(),
        userId,
        botId,
        title: req.title ?? null,
        status: 'active',
        groupIds: req.group_ids,
        metadata: req.metadata ?? {},
        state: req.state ?? {},
        messageCount: 0,
        likeCount: 0,
        dislikeCount: 0,
        copiedCount: 0,
        sensitiveStatus: 'unchecked',
        lastMessageAt: null,
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

  private async load(em: EntityManager, actor: Principal, id: string, action: Action): Promise<Session> {
    const session = await em.findOne(SessionEntity, { id });
    if (!session || !allowed(actor, session, 'read')) throw new ParleyError('NOT_FOUND', `session ${id} not found`);
    if (!allowed(actor, session, action)) throw new ParleyError('FORBIDDEN', `you may not ${action} session ${id}`);
    return session;
  }

  async get(actor: Principal, id: string): Promise<SessionView> {
    return toView(await this.load(this.em(), actor, id, 'read'));
  }

  async update(req: UpdateRequest): Promise<SessionView> {
    const em = this.em();
    const session = await em.transactional(async (tx) => {
      const s = await this.load(tx, req.actor, req.id, 'write');
      const { patch } = req;
      if (patch.title !== undefined) s.title = patch.title;
      if (patch.status !== undefined) s.status = patch.status;
      if (patch.metadata !== undefined) s.metadata = patch.metadata;
      if (patch.state !== undefined) s.state = patch.state;
      const now = new Date();
      s.updatedAt = now;
      s.lastActivityAt = now;
      addToOutbox(tx, DomainEvents.sessionUpdated, this.event(s));
      return s;
    });
    this.outbox.kick();
    return toView(session);
  }

  async remove(actor: Principal, id: string): Promise<{ id: string }> {
    const em = this.em();
    await em.transactional(async (tx) => {
      const s = await this.load(tx, actor, id, 'delete');
      addToOutbox(tx, DomainEvents.sessionDeleted, this.event(s));
      tx.remove(s);
    });
    this.outbox.kick();
    return { id };
  }

  private scope(req: ListRequest): FilterQuery<Session> {
    const { actor } = req;
    if (actor.type === 'bot') {
      if (req.bot_id && req.bot_id !== actor.id) throw new ParleyError('FORBIDDEN', 'a bot may list only its own sessions');
      return { botId: actor.id, ...(req.user_id ? { userId: req.user_id } : {}) };
    }
    if (req.user_id && req.user_id !== actor.id && !actor.is_admin) {
      throw new ParleyError('FORBIDDEN', `you may not list the sessions of user ${req.user_id}`);
    }
    const where: FilterQuery<Session> = {};
    if (req.user_id) where.userId = req.user_id;
    else if (!req.bot_id || !actor.is_admin) where.userId = actor.id;
    if (req.bot_id) where.botId = req.bot_id;
    return where;
  }

  async list(req: ListRequest): Promise<Page<SessionView>> {
    const where: Record<string, unknown> = { ...(this.scope(req) as object) };
    if (req.status) where.status = req.status;
    if (req.sensitive_status) where.sensitiveStatus = req.sensitive_status;
    if (req.feedback === 'like') where.likeCount = { $gt: 0 };
    if (req.feedback === 'dislike') where.dislikeCount = { $gt: 0 };
    if (req.q) where.title = { $ilike: `%${escapeLike(req.q)}%` };
    if (req.created_from || req.created_to) {
      where.createdAt = {
        ...(req.created_from ? { $gte: new Date(req.created_from) } : {}),
        ...(req.created_to ? { $lt: new Date(req.created_to) } : {}),
      };
    }
    const em = this.em();
    const orderBy = { lastActivityAt: 'desc', id: 'desc' } as const;
    const { page } = req;
    if (page.kind === 'offset') {
      const [rows, total] = await em.findAndCount(SessionEntity, where as FilterQuery<Session>, {
        orderBy,
        limit: page.size,
        offset: (page.page - 1) * page.size,
      });
      return { items: rows.map(toView), total, page: page.page, size: page.size };
    }
    let keyset: FilterQuery<Session> = {};
    if (page.cursor) {
      const [at, id] = decodeCursor(page.cursor, 2);
      const when = new Date(String(at));
      keyset = { $or: [{ lastActivityAt: { $lt: when } }, { lastActivityAt: when, id: { $lt: String(id) } }] };
    }
    const rows = await em.find(SessionEntity, { $and: [where as FilterQuery<Session>, keyset] }, {
      orderBy,
      limit: page.limit + 1,
    });
    const more = rows.length > page.limit;
    const items = rows.slice(0, page.limit);
    const last = items.at(-1);
    return {
      items: items.map(toView),
      next_cursor: more && last ? encodeCursor([last.lastActivityAt.toISOString(), last.id]) : null,
    };
  }
}

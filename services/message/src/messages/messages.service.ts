import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { jetstreamManager } from '@nats-io/jetstream';
import { MikroORM, UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import {
  DOMAIN_STREAM,
  DomainEvents,
  Durables,
  MAX_BATCH_REPLY_BYTES,
  ParleyError,
  SessionAccessRpc,
  liveSessionSubject,
  type Message as MessageView,
  type MessagePage,
  type MessageStats,
  type NewMessage,
  type PageRequest,
  type Principal,
  type ReadScope,
  type SessionAccessSchema,
} from '@parley/contracts';
import { JsonText, LOGGER, Nats, RpcClient, encodeJson, payloadBudget, traceHeaders, type Logger } from '@parley/kit';
import { Keyset, OutboxRelay, coalesceInOutbox } from '@parley/kit/database';
import { MessageEntity, type Message, type SessionScope } from './message.entity';
import { sizeOf } from './message-size';
import {
  MessagesRepository,
  SEARCH_HITS,
  copyRight,
  messagesBySeq,
  statsKey,
  type InsertRight,
  type NewRow,
  type ScopeOwners,
  type SearchHit,
} from './messages.repository';

type SessionAccess = z.infer<typeof SessionAccessSchema>;
type Feedback = 'like' | 'dislike' | null;
type Sensitive = 'unchecked' | 'pass' | 'violation';

export function toView(m: Message): MessageView {
  return {
    id: m.id,
    session_id: m.sessionId,
    seq: m.seq,
    role: m.role as MessageView['role'],
    content: m.content,
    tokens: m.tokens,
    metadata: m.metadata,
    media: m.media as MessageView['media'],
    feedback: (m.feedback ?? null) as Feedback,
    copied: m.copied,
    sensitive_status: m.sensitiveStatus as Sensitive,
    client_message_id: m.clientMessageId ?? null,
    created_at: m.createdAt.toISOString(),
  };
}

/** A session is `violation` if any message is, `pass` if all are, else `unchecked`. */
export function rolledUpSensitive(
  scope: Pick<SessionScope, 'messageCount' | 'passCount' | 'violationCount'>,
): Sensitive {
  if (scope.violationCount > 0) return 'violation';
  return scope.messageCount > 0 && scope.passCount === scope.messageCount ? 'pass' : 'unchecked';
}

function stats(scope: SessionScope): MessageStats {
  return {
    session_id: scope.sessionId,
    version: scope.statsVersion,
    message_count: scope.messageCount,
    like_count: scope.likeCount,
    dislike_count: scope.dislikeCount,
    copied_count: scope.copiedCount,
    sensitive_status: rolledUpSensitive(scope),
    last_message_at: scope.lastMessageAt ? scope.lastMessageAt.toISOString() : null,
  };
}

@Injectable()
export class MessagesService implements OnApplicationBootstrap, OnApplicationShutdown {
  /**
   * Whether this instance may decide rights from its copy: only once its session-events
   * consumer has caught up after start. A change made while no message service ran took no
   * fence, and its event may still be waiting (decision 0023).
   */
  private copyTrusted = false;
  private stopped = false;

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(MessagesRepository) private readonly messages: MessagesRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    void this.trustCopyOnceCaughtUp();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
  }

  /** Polls the session-events consumer until nothing is pending or unacknowledged, then trusts the copy. */
  private async trustCopyOnceCaughtUp(): Promise<void> {
    const jsm = await jetstreamManager(this.nats.connection);
    while (!this.stopped) {
      try {
        const info = await jsm.consumers.info(this.nats.stream(DOMAIN_STREAM), Durables.messageSessionEvents);
        if (info.num_pending === 0 && info.num_ack_pending === 0) {
          this.copyTrusted = true;
          this.logger.info('session scopes caught up: rights decided from the copy');
          return;
        }
      } catch {
        // The consumer is not there yet (the transport creates it as it starts serving).
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** The session service decides who may touch a session when the copy cannot (decision 0023). */
  private authorize(actor: Principal, sessionId: string, action: 'read' | 'write' | 'manage'): Promise<SessionAccess> {
    return this.rpc.call(SessionAccessRpc, { actor, id: sessionId, action });
  }

  /** A read right: from the copy of the session's scope when it can say, else from the session service. */
  private async mayRead(actor: Principal, sessionId: string): Promise<void> {
    if (this.copyTrusted && (await this.messages.readableByCopy(sessionId, copyRight(actor, 'read')))) return;
    await this.authorize(actor, sessionId, 'read');
  }

  /** Marks the copy of a session's scope as not to be trusted until the change at `until` arrives. */
  async fence(scope: ScopeOwners, until: Date): Promise<void> {
    await this.messages.fence(scope, until);
  }

  /** The session's counters, coalesced with the appends' announcements (see COALESCE_ON_CONFLICT). */
  private async announce(tx: EntityManager, scope: SessionScope): Promise<void> {
    scope.statsVersion += 1;
    // The new version must be in the row before the outbox row states it.
    await tx.flush();
    await coalesceInOutbox(tx, DomainEvents.messageStats, stats(scope), statsKey(scope.sessionId));
  }

  /**
   * Live fan-out after the commit: best effort, never failing the request. A message too large
   * for one NATS message goes out as a notice the gateway follows up with `after`.
   */
  private publishLive(messages: MessageView[]): void {
    const budget = payloadBudget(this.nats.connection);
    for (const m of messages) {
      try {
        let body = encodeJson(m);
        if (body.length > budget) body = encodeJson({ session_id: m.session_id, seq: m.seq, oversized: true });
        this.nats.connection.publish(this.nats.subject(liveSessionSubject(m.session_id)), body, {
          headers: traceHeaders(),
        });
      } catch (error) {
        this.logger.warn({ err: error, session: m.session_id, seq: m.seq }, 'live fan-out failed');
      }
    }
  }

  async append(
    actor: Principal,
    sessionId: string,
    input: NewMessage,
  ): Promise<{ created: boolean; message: MessageView }> {
    const rows = this.prepare(sessionId, [input]);
    try {
      // The owner's (or the bot's) append in one statement, the right checked on the locked
      // copy; anything the copy cannot decide asks the session service.
      if (this.copyTrusted) {
        const [mine] = await this.insert(sessionId, { byCopy: copyRight(actor, 'write') }, rows);
        if (mine) return { created: true, message: mine };
      }
      const session = await this.authorize(actor, sessionId, 'write');
      if (session.status === 'archived') throw new ParleyError('CONFLICT', `session ${sessionId} is archived`);
      if (input.client_message_id) {
        const existing = await this.messages.byClientId(sessionId, input.client_message_id);
        if (existing) return { created: false, message: toView(existing) };
      }
      const [message] = await this.insert(sessionId, { asked: session }, rows);
      if (!message) throw new ParleyError('NOT_FOUND', `session ${sessionId} not found`);
      return { created: true, message };
    } catch (error) {
      // Only an authorised insert reaches the unique index, so the earlier message may be shown.
      if (error instanceof UniqueConstraintViolationException && input.client_message_id) {
        const existing = await this.messages.byClientId(sessionId, input.client_message_id);
        if (existing) return { created: false, message: toView(existing) };
      }
      throw error;
    }
  }

  /** All or none: one transaction; messages whose client_message_id was already used come back as they were. */
  async appendBatch(actor: Principal, sessionId: string, inputs: NewMessage[]): Promise<MessageView[]> {
    const session = await this.authorize(actor, sessionId, 'write');
    if (session.status === 'archived') throw new ParleyError('CONFLICT', `session ${sessionId} is archived`);
    const ids = inputs.map((m) => m.client_message_id).filter((id): id is string => !!id);
    if (new Set(ids).size !== ids.length) {
      throw new ParleyError('VALIDATION_FAILED', 'messages: a client_message_id appears twice in the batch', {
        errors: [{ field: 'messages', message: 'duplicate client_message_id' }],
      });
    }
    // Earlier messages answer as stored, whatever they weigh: weigh them before reading them.
    const earlier = ids.length ? await this.messages.sizesByClientIds(sessionId, ids) : [];
    const knownIds = new Set(earlier.map((m) => m.clientMessageId));
    const fresh = this.prepare(
      session.id,
      inputs.filter((m) => !m.client_message_id || !knownIds.has(m.client_message_id)),
    );
    const replyBytes = [...earlier, ...fresh].reduce((sum, m) => sum + m.sizeBytes, 0);
    if (replyBytes > MAX_BATCH_REPLY_BYTES) {
      throw new ParleyError(
        'PAYLOAD_TOO_LARGE',
        'messages: the messages stored before under these client_message_ids are too large to answer with this batch; send fewer at once',
        { errors: [{ field: 'messages', message: 'the answer would be larger than 960 KiB' }] },
      );
    }
    const stored = earlier.length ? await this.messages.byIds(earlier.map((m) => m.id)) : [];
    const known = new Map(stored.map((m) => [m.clientMessageId, m]));
    const inserted = fresh.length ? await this.insert(session.id, { asked: session }, fresh) : [];
    if (fresh.length && inserted.length === 0) throw new ParleyError('NOT_FOUND', `session ${sessionId} not found`);
    let next = 0;
    return inputs.map((m) => {
      const earlierOne = m.client_message_id && known.get(m.client_message_id);
      return earlierOne ? toView(earlierOne) : inserted[next++];
    });
  }

  /** New messages as rows to insert, in order, each with its id, time and size. */
  private prepare(sessionId: string, inputs: NewMessage[]): NewRow[] {
    const now = new Date();
    return inputs.map((m, i) => {
      const row = {
        ord: i + 1,
        id: uuidv7(),
        role: m.role,
        content: m.content,
        tokens: m.tokens ?? 0,
        metadata: m.metadata ?? {},
        media: m.media ?? [],
        client_message_id: m.client_message_id ?? null,
        created_at: now,
      };
      return { ...row, sizeBytes: sizeOf({ ...row, session_id: sessionId }) };
    });
  }

  /** Stores new messages (see MessagesRepository.insert), then wakes the relay and fans them out live. */
  private async insert(sessionId: string, right: InsertRight, rows: NewRow[]): Promise<MessageView[]> {
    const messages = await this.messages.insert(sessionId, right, rows);
    if (messages.length === 0) return messages;
    this.outbox.kick();
    this.publishLive(messages);
    return messages;
  }

  async list(
    actor: Principal,
    sessionId: string,
    order: 'asc' | 'desc',
    page: PageRequest,
  ): Promise<MessagePage | JsonText> {
    const list = messagesBySeq(order);
    const bind = { actor, filters: { session_id: sessionId, order } };
    if (page.kind === 'offset') {
      await this.mayRead(actor, sessionId);
      // The page's positions stay where page/size puts them; when its messages do not all fit,
      // it holds the first ones and a cursor (for the same order) to read on from there.
      const [{ items, more }, total] = await Promise.all([
        this.messages.seqPage(sessionId, order, {
          offset: (page.page - 1) * page.size,
          candidates: page.size,
          take: page.size,
        }),
        this.messages.count(sessionId),
      ]);
      const last = items.at(-1);
      return {
        items,
        total,
        page: page.page,
        size: page.size,
        ...(more && last ? { next_cursor: this.keyset.cursorAt(list, bind, [last.seq]) } : {}),
      };
    }
    const after = this.keyset.after(list, page.cursor, bind);
    const range = {
      afterSeq: after === undefined ? undefined : Number(after[0]),
      candidates: page.limit + 1,
      take: page.limit,
    };
    const rendered = await this.readChecked(
      actor,
      sessionId,
      (byCopy) => this.messages.seqPageJson(sessionId, order, range, byCopy),
      (found) => found.count > 0,
    );
    const cursor = (more: boolean, seq: number | null | undefined) =>
      more && typeof seq === 'number' ? this.keyset.cursorAt(list, bind, [seq]) : null;
    if (rendered.items !== null) {
      // Sent as PostgreSQL rendered it: the common case builds no row objects and encodes nothing.
      const next = cursor(rendered.more, rendered.lastSeq);
      return new JsonText(`{"items":${rendered.items},"next_cursor":${JSON.stringify(next)}}`);
    }
    // Over the budget as rendered: the same rows as objects, encoded compactly.
    const { items, more } = await this.readChecked(
      actor,
      sessionId,
      (byCopy) => this.messages.seqPage(sessionId, order, range, byCopy),
      (found) => found.items.length > 0,
    );
    return { items, next_cursor: cursor(more, items.at(-1)?.seq) };
  }

  /**
   * A read of a session's rows under the read right: by the copy in the same statement when the
   * copy is trusted (nothing `found` may also mean that it cannot decide), otherwise, or then,
   * after the usual check.
   */
  private async readChecked<T>(
    actor: Principal,
    sessionId: string,
    read: (byCopy?: ReturnType<typeof copyRight>) => Promise<T>,
    found: (result: T) => boolean,
  ): Promise<T> {
    if (this.copyTrusted) {
      const byCopy = await read(copyRight(actor, 'read'));
      if (found(byCopy)) return byCopy;
    }
    await this.mayRead(actor, sessionId);
    return read();
  }

  /** Messages after a seq, ascending, as many as fit (see seqPage); `more` when others follow. */
  async after(
    actor: Principal,
    sessionId: string,
    afterSeq: number,
    limit: number,
  ): Promise<{ items: MessageView[]; more: boolean }> {
    await this.mayRead(actor, sessionId);
    return this.messages.seqPage(sessionId, 'asc', { afterSeq, candidates: limit + 1, take: limit });
  }

  async latest(actor: Principal, sessionId: string): Promise<MessageView> {
    await this.mayRead(actor, sessionId);
    const last = await this.messages.latest(sessionId);
    if (!last) throw new ParleyError('NOT_FOUND', `session ${sessionId} has no messages`);
    return toView(last);
  }

  /** Finds the message's session and asks whether the actor may `action` it; unknown or unreadable is 404. */
  private async messageFor(actor: Principal, id: string, action: 'write' | 'manage'): Promise<SessionAccess> {
    const message = await this.orm.em.fork().findOne(MessageEntity, { id });
    if (!message) throw new ParleyError('NOT_FOUND', `message ${id} not found`);
    try {
      return await this.authorize(actor, message.sessionId, action);
    } catch (error) {
      if (error instanceof ParleyError && error.code === 'NOT_FOUND')
        throw new ParleyError('NOT_FOUND', `message ${id} not found`);
      throw error;
    }
  }

  async feedback(actor: Principal, id: string, body: { feedback: Feedback; copied?: true }): Promise<MessageView> {
    const session = await this.messageFor(actor, id, 'write');
    const message = await this.orm.em.fork().transactional(async (tx) => {
      const scope = await this.messages.lockScope(tx, session);
      const m = await tx.findOneOrFail(MessageEntity, { id });
      const before = (m.feedback ?? null) as Feedback;
      scope.likeCount += Number(body.feedback === 'like') - Number(before === 'like');
      scope.dislikeCount += Number(body.feedback === 'dislike') - Number(before === 'dislike');
      m.feedback = body.feedback;
      if (body.copied && !m.copied) {
        m.copied = true;
        scope.copiedCount += 1;
      }
      await this.announce(tx, scope);
      return m;
    });
    this.outbox.kick();
    return toView(message);
  }

  async setSensitive(actor: Principal, id: string, status: Sensitive): Promise<MessageView> {
    if (actor.type !== 'user' || !actor.is_admin) throw new ParleyError('FORBIDDEN', 'this needs an administrator');
    const session = await this.messageFor(actor, id, 'write');
    const message = await this.orm.em.fork().transactional(async (tx) => {
      const scope = await this.messages.lockScope(tx, session);
      const m = await tx.findOneOrFail(MessageEntity, { id });
      const before = m.sensitiveStatus as Sensitive;
      scope.passCount += Number(status === 'pass') - Number(before === 'pass');
      scope.violationCount += Number(status === 'violation') - Number(before === 'violation');
      m.sensitiveStatus = status;
      await this.announce(tx, scope);
      return m;
    });
    this.outbox.kick();
    return toView(message);
  }

  /**
   * Messages matching `q` in sessions the caller may read, best match first. English words
   * match by full-text search; any substring (Chinese has no spaces) by trigram `ILIKE`.
   */
  search(
    actor: Principal,
    scope: ReadScope,
    query: { q: string; bot_id?: string; session_id?: string; limit: number; cursor?: string },
  ): Promise<{ items: SearchHit[]; next_cursor: string | null }> {
    // The readable scope follows from the caller, who is bound; the filters are the client's.
    const bind = { actor, filters: { q: query.q, bot_id: query.bot_id, session_id: query.session_id } };
    return this.keyset.fitted(SEARCH_HITS, query, bind, (position) => this.messages.search(scope, query, position), {
      view: (hit) => hit,
      key: (hit) => [hit.rank, hit.id],
    });
  }
}

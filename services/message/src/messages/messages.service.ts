import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { z } from 'zod';
import {
  DomainEvents,
  MAX_BATCH_REPLY_BYTES,
  MESSAGE_PAGE_BYTES,
  ParleyError,
  SessionAccessRpc,
  decodeCursor,
  encodeCursor,
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
import {
  LOGGER,
  Nats,
  OutboxRelay,
  RpcClient,
  addToOutbox,
  encodeJson,
  payloadBudget,
  traceCarrier,
  traceHeaders,
  type Logger,
} from '@parley/kit';
import { MessageEntity, SessionScopeEntity, type Message, type SessionScope } from './message.entity';
import { sizeOf } from './message-size';

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

/** A message row as SQL returns it, in its wire form: lists skip entity hydration. */
function viewOf(r: Record<string, unknown>): MessageView {
  return {
    id: String(r.id),
    session_id: String(r.session_id),
    seq: Number(r.seq),
    role: r.role as MessageView['role'],
    content: String(r.content),
    tokens: Number(r.tokens),
    metadata: r.metadata as MessageView['metadata'],
    media: r.media as MessageView['media'],
    feedback: (r.feedback ?? null) as Feedback,
    copied: Boolean(r.copied),
    sensitive_status: r.sensitive_status as Sensitive,
    client_message_id: (r.client_message_id ?? null) as string | null,
    created_at: new Date(r.created_at as string).toISOString(),
  };
}

const MESSAGE_COLUMNS = `m.id, m.session_id, m.seq, m.role, m.content, m.tokens, m.metadata, m.media, m.feedback, m.copied,
  m.sensitive_status, m.client_message_id, m.created_at`;

/** The same rule in SQL, over a session_scopes row. */
const SENSITIVE_SQL = `case when violation_count > 0 then 'violation' when message_count > 0 and pass_count = message_count then 'pass' else 'unchecked' end`;

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

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/** A message to insert, as `prepare` lays it out. */
interface NewRow {
  ord: number;
  id: string;
  role: string;
  content: string;
  tokens: number;
  metadata: object;
  media: unknown[];
  client_message_id: string | null;
  created_at: Date;
  sizeBytes: number;
}

/** The seq a list cursor stands for. */
function seqOf(cursor: string): number {
  const seq = decodeCursor(cursor, 1)[0];
  if (typeof seq === 'number' && Number.isInteger(seq) && seq >= 0) return seq;
  throw new ParleyError('VALIDATION_FAILED', 'cursor: not a cursor this list issued', {
    errors: [{ field: 'cursor', message: 'not a cursor this list issued' }],
  });
}

@Injectable()
export class MessagesService {
  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** The session service decides who may touch a session; its answer also refreshes our copy of the scope. */
  private authorize(actor: Principal, sessionId: string, action: 'read' | 'write' | 'manage'): Promise<SessionAccess> {
    return this.rpc.call(SessionAccessRpc, { actor, id: sessionId, action });
  }

  /** Locks the session's scope row (creating it from the session service's answer if new). */
  private async lockScope(tx: EntityManager, session: SessionAccess): Promise<SessionScope> {
    await tx.execute(
      `insert into session_scopes (session_id, user_id, bot_id, group_ids, updated_at) values (?, ?, ?, ?::uuid[], now())
       on conflict (session_id) do update set user_id = excluded.user_id, bot_id = excluded.bot_id, group_ids = excluded.group_ids`,
      [session.id, session.user_id, session.bot_id, `{${session.group_ids.join(',')}}`],
    );
    return tx.findOneOrFail(SessionScopeEntity, { sessionId: session.id }, { lockMode: 3 /* FOR UPDATE */ });
  }

  private announce(tx: EntityManager, scope: SessionScope): void {
    scope.statsVersion += 1;
    addToOutbox(tx, DomainEvents.messageStats, stats(scope));
  }

  /**
   * Live fan-out after the commit: best effort, never failing the request. A message too large
   * for one NATS message goes out as a notice the gateway follows up with `after`.
   */
  private publishLive(messages: Message[]): void {
    const budget = payloadBudget(this.nats.connection);
    for (const m of messages) {
      try {
        let body = encodeJson(toView(m));
        if (body.length > budget) body = encodeJson({ session_id: m.sessionId, seq: m.seq, oversized: true });
        this.nats.connection.publish(this.nats.subject(liveSessionSubject(m.sessionId)), body, {
          headers: traceHeaders(),
        });
      } catch (error) {
        this.logger.warn({ err: error, session: m.sessionId, seq: m.seq }, 'live fan-out failed');
      }
    }
  }

  async append(
    actor: Principal,
    sessionId: string,
    input: NewMessage,
  ): Promise<{ created: boolean; message: MessageView }> {
    const session = await this.authorize(actor, sessionId, 'write');
    if (session.status === 'archived') throw new ParleyError('CONFLICT', `session ${sessionId} is archived`);
    if (input.client_message_id) {
      const existing = await this.byClientId(sessionId, input.client_message_id);
      if (existing) return { created: false, message: toView(existing) };
    }
    try {
      const [message] = await this.insert(session, this.prepare(session.id, [input]));
      return { created: true, message: toView(message) };
    } catch (error) {
      if (error instanceof UniqueConstraintViolationException && input.client_message_id) {
        const existing = await this.byClientId(sessionId, input.client_message_id);
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
    const earlier = ids.length
      ? await this.orm.em
          .fork()
          .find(
            MessageEntity,
            { sessionId, clientMessageId: { $in: ids } },
            { fields: ['id', 'clientMessageId', 'sizeBytes'] },
          )
      : [];
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
    const stored = earlier.length
      ? await this.orm.em.fork().find(MessageEntity, { id: { $in: earlier.map((m) => m.id) } })
      : [];
    const known = new Map(stored.map((m) => [m.clientMessageId, m]));
    const inserted = fresh.length ? await this.insert(session, fresh) : [];
    let next = 0;
    return inputs.map((m) => toView((m.client_message_id && known.get(m.client_message_id)) || inserted[next++]));
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

  /**
   * One statement: take the next seqs from the session's counter row, insert the messages and
   * the counters' outbox event together. The row lock that keeps seq gapless is held only for
   * this statement and its commit, so concurrent appends to one session queue briefly.
   */
  private async insert(session: SessionAccess, rows: NewRow[]): Promise<Message[]> {
    const now = rows[0].created_at;
    const em = this.orm.em.fork();
    await em.execute(
      `insert into session_scopes (session_id, user_id, bot_id, group_ids, updated_at) values (?, ?, ?, ?::uuid[], now())
       on conflict (session_id) do update set user_id = excluded.user_id, bot_id = excluded.bot_id, group_ids = excluded.group_ids`,
      [session.id, session.user_id, session.bot_id, `{${session.group_ids.join(',')}}`],
    );
    const records = rows.map(({ created_at: _, sizeBytes, ...row }) => ({ ...row, size_bytes: sizeBytes }));
    const inserted = await em.execute<Record<string, unknown>[]>(
      `with scope as (
         update session_scopes set last_seq = last_seq + ?, message_count = message_count + ?, last_message_at = ?,
           updated_at = ?, stats_version = stats_version + 1
         where session_id = ? returning *
       ), inserted as (
         insert into messages (id, session_id, seq, role, content, tokens, metadata, media, feedback, copied, sensitive_status, client_message_id, created_at, size_bytes)
         select v.id, scope.session_id, scope.last_seq - ? + v.ord, v.role, v.content, v.tokens, v.metadata, v.media,
                null, false, 'unchecked', v.client_message_id, ?, v.size_bytes
         from scope, jsonb_to_recordset(?::jsonb) as v(ord int, id uuid, role text, content text, tokens int, metadata jsonb, media jsonb, client_message_id text, size_bytes int)
         returning *
       ), announced as (
         insert into outbox (id, subject, payload, headers, created_at)
         select ?, ?, jsonb_build_object(
             'session_id', session_id, 'version', stats_version, 'message_count', message_count,
             'like_count', like_count, 'dislike_count', dislike_count, 'copied_count', copied_count,
             'sensitive_status', ${SENSITIVE_SQL},
             'last_message_at', to_char(last_message_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
           ?::jsonb, now()
         from scope
       )
       select * from inserted order by seq`,
      [
        rows.length,
        rows.length,
        now,
        now,
        session.id,
        rows.length,
        now,
        JSON.stringify(records),
        uuidv7(),
        DomainEvents.messageStats.subject,
        JSON.stringify(traceCarrier()),
      ],
    );
    const messages = inserted.map((row) => em.map(MessageEntity, row));
    this.outbox.kick();
    this.publishLive(messages);
    return messages;
  }

  private byClientId(sessionId: string, clientMessageId: string): Promise<Message | null> {
    return this.orm.em.fork().findOne(MessageEntity, { sessionId, clientMessageId });
  }

  async list(actor: Principal, sessionId: string, order: 'asc' | 'desc', page: PageRequest): Promise<MessagePage> {
    await this.authorize(actor, sessionId, 'read');
    if (page.kind === 'offset') {
      // The page's positions stay where page/size puts them; when its messages do not all fit,
      // it holds the first ones and a cursor to read on from there.
      const [{ items, more }, counted] = await Promise.all([
        this.seqPage(sessionId, order, { offset: (page.page - 1) * page.size, candidates: page.size, take: page.size }),
        this.orm.em
          .fork()
          .execute<{ total: number }[]>('select count(*)::int as total from messages where session_id = ?', [
            sessionId,
          ]),
      ]);
      const last = items.at(-1);
      return {
        items,
        total: counted[0]?.total ?? 0,
        page: page.page,
        size: page.size,
        ...(more && last ? { next_cursor: encodeCursor([last.seq]) } : {}),
      };
    }
    const after = page.cursor ? seqOf(page.cursor) : undefined;
    const { items, more } = await this.seqPage(sessionId, order, {
      afterSeq: after,
      candidates: page.limit + 1,
      take: page.limit,
    });
    const last = items.at(-1);
    return { items, next_cursor: more && last ? encodeCursor([last.seq]) : null };
  }

  /**
   * A session's messages by seq, as many as fit: up to `take` of the candidates while their
   * size_bytes add up to at most MESSAGE_PAGE_BYTES, and always the first. The running sum is
   * taken over (seq, size_bytes) alone, so the rows it leaves out are never read. `more`: some
   * candidates were left out (with one candidate beyond `take`, that means more remain).
   */
  private async seqPage(
    sessionId: string,
    order: 'asc' | 'desc',
    range: { afterSeq?: number; offset?: number; candidates: number; take: number },
  ): Promise<{ items: MessageView[]; more: boolean }> {
    const direction = order === 'asc' ? 'asc' : 'desc';
    const params: unknown[] = [sessionId];
    let after = '';
    if (range.afterSeq !== undefined) {
      after = `and seq ${direction === 'asc' ? '>' : '<'} ?`;
      params.push(range.afterSeq);
    }
    params.push(range.offset ?? 0, range.candidates, range.take, MESSAGE_PAGE_BYTES, sessionId);
    const rows = await this.orm.em.fork().execute<Record<string, unknown>[]>(
      `with candidates as (
         select seq, size_bytes from messages where session_id = ? ${after}
         order by seq ${direction} offset ? limit ?
       ), fitting as (
         select seq from (
           select seq, row_number() over w as n, sum(size_bytes) over w as running
           from candidates window w as (order by seq ${direction} rows unbounded preceding)
         ) sized
         where n <= ? and (n = 1 or running <= ?)
       )
       select ${MESSAGE_COLUMNS}, (select count(*) from candidates) > (select count(*) from fitting) as more
       from messages m join fitting f on f.seq = m.seq
       where m.session_id = ?
       order by m.seq ${direction}`,
      params,
    );
    return { items: rows.map(viewOf), more: rows.length > 0 && rows[0].more === true };
  }

  /** Messages after a seq, ascending, as many as fit (see seqPage); `more` when others follow. */
  async after(
    actor: Principal,
    sessionId: string,
    afterSeq: number,
    limit: number,
  ): Promise<{ items: MessageView[]; more: boolean }> {
    await this.authorize(actor, sessionId, 'read');
    return this.seqPage(sessionId, 'asc', { afterSeq, candidates: limit + 1, take: limit });
  }

  async latest(actor: Principal, sessionId: string): Promise<MessageView> {
    await this.authorize(actor, sessionId, 'read');
    const [last] = await this.orm.em.fork().find(MessageEntity, { sessionId }, { orderBy: { seq: 'desc' }, limit: 1 });
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
      const scope = await this.lockScope(tx, session);
      const m = await tx.findOneOrFail(MessageEntity, { id });
      const before = (m.feedback ?? null) as Feedback;
      scope.likeCount += Number(body.feedback === 'like') - Number(before === 'like');
      scope.dislikeCount += Number(body.feedback === 'dislike') - Number(before === 'dislike');
      m.feedback = body.feedback;
      if (body.copied && !m.copied) {
        m.copied = true;
        scope.copiedCount += 1;
      }
      this.announce(tx, scope);
      return m;
    });
    this.outbox.kick();
    return toView(message);
  }

  async setSensitive(actor: Principal, id: string, status: Sensitive): Promise<MessageView> {
    if (actor.type !== 'user' || !actor.is_admin) throw new ParleyError('FORBIDDEN', 'this needs an administrator');
    const session = await this.messageFor(actor, id, 'write');
    const message = await this.orm.em.fork().transactional(async (tx) => {
      const scope = await this.lockScope(tx, session);
      const m = await tx.findOneOrFail(MessageEntity, { id });
      const before = m.sensitiveStatus as Sensitive;
      scope.passCount += Number(status === 'pass') - Number(before === 'pass');
      scope.violationCount += Number(status === 'violation') - Number(before === 'violation');
      m.sensitiveStatus = status;
      this.announce(tx, scope);
      return m;
    });
    this.outbox.kick();
    return toView(message);
  }

  /**
   * Messages matching `q` in sessions the caller may read, best match first. English words
   * match by full-text search; any substring (Chinese has no spaces) by trigram `ILIKE`.
   */
  async search(
    scope: ReadScope,
    query: { q: string; bot_id?: string; session_id?: string; limit: number; cursor?: string },
  ): Promise<{ items: (MessageView & { rank: number })[]; next_cursor: string | null }> {
    const conditions: string[] = [];
    const params: unknown[] = [query.q, query.q, `%${escapeLike(query.q)}%`];
    if (!scope.all) {
      const readable: string[] = [];
      if (scope.user_id) {
        readable.push('s.user_id = ?');
        params.push(scope.user_id);
      }
      if (scope.group_ids.length) {
        readable.push('s.group_ids && ?::uuid[]');
        params.push(`{${scope.group_ids.join(',')}}`);
      }
      if (scope.bot_ids.length) {
        readable.push('s.bot_id = any(?::uuid[])');
        params.push(`{${scope.bot_ids.join(',')}}`);
      }
      if (scope.session_ids.length) {
        readable.push('s.session_id = any(?::uuid[])');
        params.push(`{${scope.session_ids.join(',')}}`);
      }
      if (readable.length === 0) return { items: [], next_cursor: null };
      conditions.push(`(${readable.join(' or ')})`);
    }
    if (query.bot_id) {
      conditions.push('s.bot_id = ?');
      params.push(query.bot_id);
    }
    if (query.session_id) {
      conditions.push('m.session_id = ?');
      params.push(query.session_id);
    }
    let after = '';
    if (query.cursor) {
      const [rank, id] = decodeCursor(query.cursor, 2);
      after = 'where (hit.rank < ? or (hit.rank = ? and hit.id < ?))';
      params.push(Number(rank), Number(rank), String(id));
    }
    params.push(query.limit + 1, query.limit, MESSAGE_PAGE_BYTES);
    // Ranking reads every match's content; the page then takes the best ones while they fit.
    const rows = await this.orm.em.fork().execute<Record<string, unknown>[]>(
      `with q as (select plainto_tsquery('simple', ?) as ts, ?::text as text),
       candidates as (
         select hit.id, hit.size_bytes, hit.rank from (
           select m.id, m.size_bytes,
                  (ts_rank(to_tsvector('simple', m.content), q.ts) + public.similarity(m.content, q.text))::float8 as rank
           from messages m join session_scopes s on s.session_id = m.session_id, q
           where (to_tsvector('simple', m.content) @@ q.ts or m.content ilike ?)
           ${conditions.length ? `and ${conditions.join(' and ')}` : ''}
         ) hit ${after}
         order by hit.rank desc, hit.id desc
         limit ?
       ), fitting as (
         select id, rank from (
           select id, rank, row_number() over w as n, sum(size_bytes) over w as running
           from candidates window w as (order by rank desc, id desc rows unbounded preceding)
         ) sized
         where n <= ? and (n = 1 or running <= ?)
       )
       select ${MESSAGE_COLUMNS}, f.rank, (select count(*) from candidates) > (select count(*) from fitting) as more
       from messages m join fitting f on f.id = m.id
       order by f.rank desc, f.id desc`,
      params,
    );
    const items = rows.map((row) => ({ ...viewOf(row), rank: Number(row.rank) }));
    const last = items.at(-1);
    const more = rows.length > 0 && rows[0].more === true;
    return { items, next_cursor: more && last ? encodeCursor([last.rank, last.id]) : null };
  }
}

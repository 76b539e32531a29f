import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import { DomainEvents, MESSAGE_PAGE_BYTES, type Message as MessageView, type ReadScope } from '@parley/contracts';
import { traceCarrier } from '@parley/kit';
import { allowLongStatements, keysetSql, type KeysetList, type KeyValues } from '@parley/kit/database';
import { MessageEntity, SessionScopeEntity, type Message, type SessionScope } from './message.entity';

type Feedback = 'like' | 'dislike' | null;
type Sensitive = 'unchecked' | 'pass' | 'violation';

/** A session's messages by seq, one way or the other. */
export const messagesBySeq = (order: 'asc' | 'desc'): KeysetList => ({
  name: 'messages',
  keys: [{ column: 'seq', type: 'int', order }],
});

/** Search hits, best match first. */
export const SEARCH_HITS: KeysetList = {
  name: 'message-search',
  keys: [
    { column: 'hit.rank', type: 'float', order: 'desc' },
    { column: 'hit.id', type: 'uuid', order: 'desc' },
  ],
};

/** Who may read a session, as the session service answers or announces it. */
export interface ScopeOwners {
  id: string;
  user_id: string;
  bot_id: string | null;
  group_ids: string[];
}

/** A message to insert, as the service lays it out. */
export interface NewRow {
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

export type SearchHit = MessageView & { rank: number };

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

/** `rolledUpSensitive` in SQL, over a session_scopes row. */
const SENSITIVE_SQL = `case when violation_count > 0 then 'violation' when message_count > 0 and pass_count = message_count then 'pass' else 'unchecked' end`;

/** Only the scope columns: the counters and seq belong to this service. */
const upsertScopeSql = (updatedAt: string) =>
  `insert into session_scopes (session_id, user_id, bot_id, group_ids, updated_at) values (?, ?, ?, ?::uuid[], ${updatedAt})
       on conflict (session_id) do update set user_id = excluded.user_id, bot_id = excluded.bot_id, group_ids = excluded.group_ids`;
const UPSERT_SCOPE_NOW = upsertScopeSql('now()');
const UPSERT_SCOPE_AT = upsertScopeSql('?');

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/**
 * The message service's SQL: messages and each session's scope row (who may read it, its
 * counters and last seq). Methods that take an EntityManager run in the caller's transaction.
 */
@Injectable()
export class MessagesRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  /**
   * Creates or refreshes a session's scope row (in `em`'s transaction, if given); stamped with
   * `updatedAt`, else now().
   */
  async upsertScope(
    scope: ScopeOwners,
    { em = this.orm.em.fork(), updatedAt }: { em?: EntityManager; updatedAt?: Date } = {},
  ): Promise<void> {
    const params: unknown[] = [scope.id, scope.user_id, scope.bot_id, `{${scope.group_ids.join(',')}}`];
    if (updatedAt) params.push(updatedAt);
    await em.execute(updatedAt ? UPSERT_SCOPE_AT : UPSERT_SCOPE_NOW, params);
  }

  /** Locks the session's scope row (creating it from `scope` if new). */
  async lockScope(tx: EntityManager, scope: ScopeOwners): Promise<SessionScope> {
    await this.upsertScope(scope, { em: tx });
    return tx.findOneOrFail(SessionScopeEntity, { sessionId: scope.id }, { lockMode: 3 /* FOR UPDATE */ });
  }

  /**
   * One statement: take the next seqs from the session's counter row, insert the messages and
   * the counters' outbox event together. The row lock that keeps seq gapless is held only for
   * this statement and its commit, so concurrent appends to one session queue briefly.
   */
  async insert(scope: ScopeOwners, rows: NewRow[]): Promise<Message[]> {
    const now = rows[0].created_at;
    const em = this.orm.em.fork();
    await this.upsertScope(scope, { em });
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
        scope.id,
        rows.length,
        now,
        JSON.stringify(records),
        uuidv7(),
        DomainEvents.messageStats.subject,
        JSON.stringify(traceCarrier()),
      ],
    );
    return inserted.map((row) => em.map(MessageEntity, row));
  }

  byClientId(sessionId: string, clientMessageId: string): Promise<Message | null> {
    return this.orm.em.fork().findOne(MessageEntity, { sessionId, clientMessageId });
  }

  /** The messages stored before under these client_message_ids: only their ids and sizes. */
  sizesByClientIds(sessionId: string, clientMessageIds: string[]) {
    return this.orm.em
      .fork()
      .find(
        MessageEntity,
        { sessionId, clientMessageId: { $in: clientMessageIds } },
        { fields: ['id', 'clientMessageId', 'sizeBytes'] },
      );
  }

  byIds(ids: string[]): Promise<Message[]> {
    return this.orm.em.fork().find(MessageEntity, { id: { $in: ids } });
  }

  async count(sessionId: string): Promise<number> {
    const counted = await this.orm.em
      .fork()
      .execute<{ total: number }[]>('select count(*)::int as total from messages where session_id = ?', [sessionId]);
    return counted[0]?.total ?? 0;
  }

  async latest(sessionId: string): Promise<Message | undefined> {
    const [last] = await this.orm.em.fork().find(MessageEntity, { sessionId }, { orderBy: { seq: 'desc' }, limit: 1 });
    return last;
  }

  /** A deleted session's messages and scope row, together. */
  async deleteSession(sessionId: string): Promise<void> {
    await this.orm.em.fork().transactional(async (tx) => {
      // A consumer's work, which no caller waits on: a session may hold many messages.
      await allowLongStatements(tx);
      await tx.nativeDelete(MessageEntity, { sessionId });
      await tx.nativeDelete(SessionScopeEntity, { sessionId });
    });
  }

  /**
   * A session's messages by seq, as many as fit: up to `take` of the candidates while their
   * size_bytes add up to at most MESSAGE_PAGE_BYTES, and always the first. The running sum is
   * taken over (seq, size_bytes) alone, so the rows it leaves out are never read. `more`: some
   * candidates were left out (with one candidate beyond `take`, that means more remain).
   */
  async seqPage(
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

  /**
   * Messages matching `q` in the sessions `scope` may read, after a position of SEARCH_HITS:
   * up to `take` while they fit in MESSAGE_PAGE_BYTES, and always one. English words match by
   * full-text search; any substring (Chinese has no spaces) by trigram `ILIKE`.
   */
  async search(
    scope: ReadScope,
    query: { q: string; bot_id?: string; session_id?: string },
    position: { after?: KeyValues; take: number },
  ): Promise<{ rows: SearchHit[]; more: boolean }> {
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
      if (readable.length === 0) return { rows: [], more: false };
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
    if (position.after) {
      const condition = keysetSql(SEARCH_HITS, position.after);
      after = `where ${condition.sql}`;
      params.push(...condition.params);
    }
    params.push(position.take + 1, position.take, MESSAGE_PAGE_BYTES);
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
    return {
      rows: rows.map((row) => ({ ...viewOf(row), rank: Number(row.rank) })),
      more: rows.length > 0 && rows[0].more === true,
    };
  }
}

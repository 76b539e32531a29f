import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import {
  DomainEvents,
  MESSAGE_PAGE_BYTES,
  type Message as MessageView,
  type Principal,
  type ReadScope,
} from '@parley/contracts';
import { traceCarrier } from '@parley/kit';
import {
  COALESCE_ON_CONFLICT,
  allowLongStatements,
  keysetSql,
  runPrepared,
  type KeysetList,
  type KeyValues,
} from '@parley/kit/database';
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
    // A page's rows bring it as ISO text already (ISO_CREATED_AT); other reads as a timestamp.
    created_at:
      typeof r.created_at === 'string' && r.created_at.endsWith('Z')
        ? r.created_at
        : new Date(r.created_at as string).toISOString(),
  };
}

const MESSAGE_COLUMNS = `m.id, m.session_id, m.seq, m.role, m.content, m.tokens, m.metadata, m.media, m.feedback, m.copied,
  m.sensitive_status, m.client_message_id, m.created_at`;

/** `rolledUpSensitive` in SQL, over a session_scopes row. */
const SENSITIVE_SQL = `case when violation_count > 0 then 'violation' when message_count > 0 and pass_count = message_count then 'pass' else 'unchecked' end`;

/**
 * A session's scope as one of its events states it: applied unless the copy already holds a
 * later event's, or the session's deletion. It lifts a fence that this event (or a later
 * one) was awaited for. The counters and seq belong to this service and stay.
 */
const APPLY_SCOPE_EVENT = `insert into session_scopes (session_id, user_id, bot_id, group_ids, status, scope_at, updated_at)
     values (?, ?, ?, ?::uuid[], ?, ?, now())
   on conflict (session_id) do update set user_id = excluded.user_id, bot_id = excluded.bot_id,
     group_ids = excluded.group_ids, status = excluded.status, scope_at = excluded.scope_at,
     fenced_until = case when session_scopes.fenced_until <= excluded.scope_at then null else session_scopes.fenced_until end
   where session_scopes.status is distinct from 'deleted'
     and (session_scopes.scope_at is null or session_scopes.scope_at <= excluded.scope_at)`;

/**
 * A scope row from the session service's answer to a question, for a session the copy does
 * not hold yet (its created event is still on the way). An existing row keeps what events
 * said; only a status not known yet is learnt, and never while a fence stands.
 */
const ENSURE_SCOPE = `insert into session_scopes (session_id, user_id, bot_id, group_ids, status, updated_at)
     values (?, ?, ?, ?::uuid[], ?, now())
   on conflict (session_id) do update set status = excluded.status
   where session_scopes.status is null and session_scopes.fenced_until is null`;

/**
 * Who may act on a session by the copy alone, in SQL over a session_scopes row, with the
 * parameters of `copyRight`: the rule the session service applies without asking the
 * access service (an admin or the owner; a bot key its own bot's sessions, but never to
 * delete them), and only while no change to the session is under way.
 */
const RIGHT_BY_COPY = `fenced_until is null and (?::boolean or user_id = ?::uuid or bot_id = ?::uuid)`;

/** created_at as JavaScript's toISOString writes it (stored times have millisecond precision). */
const ISO_CREATED_AT = `to_char(m.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at`;

/** Statuses whose messages may be read. */
const READABLE = `status in ('active', 'archived')`;

/** The parameters of RIGHT_BY_COPY for an actor and an action. */
export function copyRight(
  actor: Principal,
  action: 'read' | 'write' | 'manage',
): [boolean, string | null, string | null] {
  if (actor.type === 'user') return [actor.is_admin, actor.id, null];
  return [false, null, action === 'manage' ? null : actor.id];
}

/** How an insert was authorised: by the copy (checked in the same statement), or by the session service's answer. */
export type InsertRight =
  { byCopy: [boolean, string | null, string | null] } | { asked: ScopeOwners & { status: string } };

/** A session's counters are announced coalesced under this key (see `statsKey`). */
const STATS_KEY_SQL = `'message-stats:' || session_id`;
export const statsKey = (sessionId: string) => `message-stats:${sessionId}`;

const pgArray = (ids: string[]) => `{${ids.join(',')}}`;

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/**
 * The message service's SQL: messages and each session's scope row (who may read it, its
 * counters and last seq). Methods that take an EntityManager run in the caller's transaction.
 */
/** Where a page of a session's messages starts and how much it may hold. */
interface PageRange {
  afterSeq?: number;
  offset?: number;
  candidates: number;
  take: number;
}

/**
 * The candidates of a page (the next rows by seq after the position), each knowing in one pass
 * whether it fits: its place within `take` and the running byte total within the page's budget.
 * With `byCopy`, the read right by the copy in the same statement: no row also when it does not
 * hold.
 */
function fittingCandidates(
  sessionId: string,
  order: 'asc' | 'desc',
  range: PageRange,
  byCopy?: [boolean, string | null, string | null],
): { sql: string; params: unknown[]; direction: 'asc' | 'desc' } {
  const direction = order === 'asc' ? 'asc' : 'desc';
  const params: unknown[] = [range.take, MESSAGE_PAGE_BYTES, sessionId];
  let after = '';
  if (range.afterSeq !== undefined) {
    after = `and seq ${direction === 'asc' ? '>' : '<'} ?`;
    params.push(range.afterSeq);
  }
  if (byCopy) {
    after += ` and exists (select 1 from session_scopes where session_id = ? and ${READABLE} and ${RIGHT_BY_COPY})`;
    params.push(sessionId, ...byCopy);
  }
  params.push(range.offset ?? 0, range.candidates);
  return {
    sql: `select c.*, (row_number() over w <= ?::int and (row_number() over w = 1 or sum(c.size_bytes) over w <= ?::int)) as fits
          from (
            select * from messages where session_id = ? ${after}
            order by seq ${direction} offset ? limit ?
          ) c
          window w as (order by c.seq ${direction} rows unbounded preceding)`,
    params,
    direction,
  };
}

@Injectable()
export class MessagesRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  /** Applies a session event's scope (see APPLY_SCOPE_EVENT); `status` undefined: not known. */
  async applyScopeEvent(scope: ScopeOwners & { status?: string }, occurredAt: Date): Promise<void> {
    await this.orm.em
      .fork()
      .execute(APPLY_SCOPE_EVENT, [
        scope.id,
        scope.user_id,
        scope.bot_id,
        pgArray(scope.group_ids),
        scope.status ?? null,
        occurredAt,
      ]);
  }

  /**
   * Stops the copy from deciding any right on the session until an event that occurred at
   * `until` or later has been applied (creating the row, fenced, if there is none yet).
   */
  async fence(scope: ScopeOwners, until: Date): Promise<void> {
    await this.orm.em.fork().execute(
      `insert into session_scopes (session_id, user_id, bot_id, group_ids, updated_at, fenced_until)
         values (?, ?, ?, ?::uuid[], now(), ?)
       on conflict (session_id) do update set fenced_until = greatest(session_scopes.fenced_until, excluded.fenced_until)`,
      [scope.id, scope.user_id, scope.bot_id, pgArray(scope.group_ids), until],
    );
  }

  /** See ENSURE_SCOPE. */
  async ensureScope(scope: ScopeOwners & { status: string }, em: EntityManager = this.orm.em.fork()): Promise<void> {
    await em.execute(ENSURE_SCOPE, [scope.id, scope.user_id, scope.bot_id, pgArray(scope.group_ids), scope.status]);
  }

  /** Whether the copy alone lets the actor read the session (active or archived). */
  async readableByCopy(sessionId: string, right: [boolean, string | null, string | null]): Promise<boolean> {
    const rows = await runPrepared(
      this.orm,
      `select 1 from session_scopes where session_id = ? and ${READABLE} and ${RIGHT_BY_COPY}`,
      [sessionId, ...right],
    );
    return rows.length > 0;
  }

  /** Locks the session's scope row (creating it from the session service's answer if new). */
  async lockScope(tx: EntityManager, scope: ScopeOwners & { status: string }): Promise<SessionScope> {
    await this.ensureScope(scope, tx);
    return tx.findOneOrFail(SessionScopeEntity, { sessionId: scope.id }, { lockMode: 3 /* FOR UPDATE */ });
  }

  /**
   * One statement: take the next seqs from the session's counter row, insert the messages and
   * the counters' outbox event together. The row lock that keeps seq gapless is held only for
   * this statement and its commit, so concurrent appends to one session queue briefly.
   *
   * By the copy, the right is checked on that same locked row (see RIGHT_BY_COPY): a fence or
   * a status stored before the statement began is seen. With the session service's answer,
   * the row is created if missing and only a deleted session refuses. Nothing inserted (an
   * empty array): the right did not hold.
   */
  async insert(sessionId: string, right: InsertRight, rows: NewRow[]): Promise<MessageView[]> {
    const now = rows[0].created_at;
    const em = this.orm.em.fork();
    let allowed: string;
    const allowedParams: unknown[] = [];
    if ('byCopy' in right) {
      allowed = `status = 'active' and ${RIGHT_BY_COPY}`;
      allowedParams.push(...right.byCopy);
    } else {
      await this.ensureScope(right.asked, em);
      allowed = `status is distinct from 'deleted'`;
    }
    const records = rows.map(({ created_at: _, sizeBytes, ...row }) => ({ ...row, size_bytes: sizeBytes }));
    const inserted = await runPrepared(
      this.orm,
      `with scope as (
         update session_scopes set last_seq = last_seq + ?, message_count = message_count + ?, last_message_at = ?,
           updated_at = ?, stats_version = stats_version + 1
         where session_id = ? and ${allowed} returning *
       ), inserted as (
         insert into messages (id, session_id, seq, role, content, tokens, metadata, media, feedback, copied, sensitive_status, client_message_id, created_at, size_bytes)
         select v.id, scope.session_id, scope.last_seq - ? + v.ord, v.role, v.content, v.tokens, v.metadata, v.media,
                null, false, 'unchecked', v.client_message_id, ?::timestamptz, v.size_bytes
         from scope, jsonb_to_recordset(?::jsonb) as v(ord int, id uuid, role text, content text, tokens int, metadata jsonb, media jsonb, client_message_id text, size_bytes int)
         returning *
       ), announced as (
         insert into outbox (id, subject, payload, headers, created_at, coalesce_key)
         select ?::uuid, ?::text, jsonb_build_object(
             'session_id', session_id, 'version', stats_version, 'message_count', message_count,
             'like_count', like_count, 'dislike_count', dislike_count, 'copied_count', copied_count,
             'sensitive_status', ${SENSITIVE_SQL},
             'last_message_at', to_char(last_message_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
           ?::jsonb, now(), ${STATS_KEY_SQL}
         from scope
         ${COALESCE_ON_CONFLICT}
       )
       select * from inserted order by seq`,
      [
        rows.length,
        rows.length,
        now,
        now,
        sessionId,
        ...allowedParams,
        rows.length,
        now,
        JSON.stringify(records),
        uuidv7(),
        DomainEvents.messageStats.subject,
        JSON.stringify(traceCarrier()),
      ],
    );
    return inserted.map(viewOf);
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
    const counted = await runPrepared<{ total: number }>(
      this.orm,
      'select count(*)::int as total from messages where session_id = ?',
      [sessionId],
    );
    return counted[0]?.total ?? 0;
  }

  async latest(sessionId: string): Promise<Message | undefined> {
    const [last] = await this.orm.em.fork().find(MessageEntity, { sessionId }, { orderBy: { seq: 'desc' }, limit: 1 });
    return last;
  }

  /**
   * A deleted session's messages, and its scope row marked `deleted`, together. The row stays
   * as a tombstone: an append the session service authorised just before the deletion can no
   * longer bring the session back.
   */
  async deleteSession(scope: ScopeOwners, occurredAt: Date): Promise<void> {
    await this.orm.em.fork().transactional(async (tx) => {
      // A consumer's work, which no caller waits on: a session may hold many messages.
      await allowLongStatements(tx);
      await tx.nativeDelete(MessageEntity, { sessionId: scope.id });
      await tx.execute(
        `insert into session_scopes (session_id, user_id, bot_id, group_ids, status, scope_at, updated_at)
           values (?, ?, ?, ?::uuid[], 'deleted', ?, now())
         on conflict (session_id) do update set status = 'deleted', fenced_until = null,
           scope_at = greatest(session_scopes.scope_at, excluded.scope_at)`,
        [scope.id, scope.user_id, scope.bot_id, pgArray(scope.group_ids), occurredAt],
      );
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
    range: PageRange,
    byCopy?: [boolean, string | null, string | null],
  ): Promise<{ items: MessageView[]; more: boolean }> {
    const candidates = fittingCandidates(sessionId, order, range, byCopy);
    // The large columns are read only for the rows that fit; the others come back as their seq alone.
    const rows = await runPrepared(
      this.orm,
      `select fits, m.id, m.session_id, m.seq, m.role, m.tokens, m.feedback, m.copied, m.sensitive_status,
              m.client_message_id, ${ISO_CREATED_AT},
              case when fits then m.content end as content,
              case when fits then m.metadata end as metadata,
              case when fits then m.media end as media
       from (${candidates.sql}) m
       order by m.seq ${candidates.direction}`,
      candidates.params,
    );
    const fitting = rows.filter((row) => row.fits === true);
    return { items: fitting.map(viewOf), more: fitting.length < rows.length };
  }

  /**
   * The same page as `seqPage`, rendered by PostgreSQL: `items` is the JSON array text of the
   * messages that fit, in the wire form (viewOf's fields, in its order), so the service sends
   * it on without reading every row into objects and encoding them again. The fit is decided
   * by `size_bytes` as in `seqPage`; `items` is null when the rendered page is over the budget
   * (jsonb renders numbers in full, 1e300 as 301 digits, and a space after `:` and `,`), and
   * such a page is read with `seqPage` instead. `count` is 0 for no row, which with `byCopy`
   * may also mean that the copy cannot decide.
   */
  async seqPageJson(
    sessionId: string,
    order: 'asc' | 'desc',
    range: PageRange,
    byCopy?: [boolean, string | null, string | null],
  ): Promise<{ items: string | null; count: number; more: boolean; lastSeq: number | null }> {
    const { sql, params, direction } = fittingCandidates(sessionId, order, range, byCopy);
    // `offset 0` keeps the inner query whole, so each fitting row is rendered once.
    const [row] = await runPrepared<{ items: string | null; n: number; rest: number; last_seq: number | null }>(
      this.orm,
      `select case when coalesce(sum(octet_length(p.j)), 0) <= ?::int
                   then coalesce('[' || string_agg(p.j, ',' order by p.seq ${direction}) || ']', '[]') end as items,
              count(p.j)::int as n,
              count(*) filter (where p.j is null)::int as rest,
              ${direction === 'asc' ? 'max' : 'min'}(p.seq) filter (where p.j is not null) as last_seq
       from (
         select m.seq, case when m.fits then row_to_json(v)::text end as j
         from (${sql}) m
         cross join lateral (
           select m.id, m.session_id, m.seq, m.role, m.content, m.tokens, m.metadata, m.media, m.feedback, m.copied,
                  m.sensitive_status, m.client_message_id, ${ISO_CREATED_AT}
         ) v
         offset 0
       ) p`,
      [MESSAGE_PAGE_BYTES, ...params],
    );
    return {
      items: row?.items ?? null,
      count: row?.n ?? 0,
      more: (row?.rest ?? 0) > 0,
      lastSeq: typeof row?.last_seq === 'number' ? row.last_seq : null,
    };
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

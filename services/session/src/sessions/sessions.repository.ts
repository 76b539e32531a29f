import { Inject, Injectable } from '@nestjs/common';
import { MikroORM, type EntityManager, type FilterQuery } from '@mikro-orm/postgresql';
import type { MessageStats, SessionFilters } from '@parley/contracts';
import { keysetFilter, keysetOrderBy, type KeyValues, type KeysetList } from '@parley/kit/database';
import { SessionEntity, type Session } from './session.entity';

/** Sessions, newest activity first. */
export const SESSIONS: KeysetList = {
  name: 'sessions',
  keys: [
    { column: 'last_activity_at', property: 'lastActivityAt', type: 'timestamp', order: 'desc' },
    { column: 'id', type: 'uuid', order: 'desc' },
  ],
};

/**
 * Whose sessions a list may show, as the service decided: a user's and/or a bot's, and
 * possibly only those in some groups (for a group admin).
 */
export interface SessionScope {
  userId?: string;
  botId?: string;
  inGroups?: string[];
}

export type SessionListFilters = Omit<SessionFilters, 'user_id' | 'bot_id'>;

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** The sessions' SQL. */
@Injectable()
export class SessionsRepository {
  constructor(@Inject(MikroORM) private readonly orm: MikroORM) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  private where(scope: SessionScope, filters: SessionListFilters): FilterQuery<Session> {
    const where: Record<string, unknown> = {};
    if (scope.botId) where.botId = scope.botId;
    if (scope.userId) where.userId = scope.userId;
    if (scope.inGroups) where.groupIds = { $overlap: scope.inGroups };
    if (filters.status) where.status = filters.status;
    if (filters.sensitive_status) where.sensitiveStatus = filters.sensitive_status;
    if (filters.feedback === 'like') where.likeCount = { $gt: 0 };
    if (filters.feedback === 'dislike') where.dislikeCount = { $gt: 0 };
    if (filters.q) where.title = { $ilike: `%${escapeLike(filters.q)}%` };
    if (filters.created_from || filters.created_to) {
      where.createdAt = {
        ...(filters.created_from ? { $gte: new Date(filters.created_from) } : {}),
        ...(filters.created_to ? { $lt: new Date(filters.created_to) } : {}),
      };
    }
    return where as FilterQuery<Session>;
  }

  /** Up to `take` sessions after the position, newest activity first. */
  listAfter(
    scope: SessionScope,
    filters: SessionListFilters,
    position: { after?: KeyValues; take: number },
  ): Promise<Session[]> {
    const after = position.after ? keysetFilter(SESSIONS, position.after) : {};
    return this.em().find(
      SessionEntity,
      { $and: [this.where(scope, filters), after as FilterQuery<Session>] },
      {
        orderBy: keysetOrderBy(SESSIONS),
        limit: position.take,
      },
    );
  }

  /** One numbered page, newest activity first, and how many sessions match. */
  listNumbered(
    scope: SessionScope,
    filters: SessionListFilters,
    page: { offset: number; limit: number },
  ): Promise<[Session[], number]> {
    return this.em().findAndCount(SessionEntity, this.where(scope, filters), {
      orderBy: keysetOrderBy(SESSIONS),
      limit: page.limit,
      offset: page.offset,
    });
  }

  /** Applies the message service's counters if they are newer than what the session holds. */
  async applyStats(stats: MessageStats): Promise<void> {
    const lastMessageAt = stats.last_message_at ? new Date(stats.last_message_at) : null;
    await this.em().execute(
      `update sessions set message_count = ?, like_count = ?, dislike_count = ?, copied_count = ?, sensitive_status = ?,
         last_message_at = ?, last_activity_at = greatest(last_activity_at, coalesce(?, last_activity_at)), stats_version = ?
       where id = ? and stats_version < ?`,
      [
        stats.message_count,
        stats.like_count,
        stats.dislike_count,
        stats.copied_count,
        stats.sensitive_status,
        lastMessageAt,
        lastMessageAt,
        stats.version,
        stats.session_id,
        stats.version,
      ],
    );
  }
}

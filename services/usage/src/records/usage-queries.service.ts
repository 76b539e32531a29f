import { Inject, Injectable } from '@nestjs/common';
import type { z } from 'zod';
import {
  MAX_SUMMARY_ROWS,
  ParleyError,
  resolveRange,
  type CursorPage,
  type Principal,
  type UsageGroupKey,
  type UsageRecordView,
  type UsageRpc,
  type UsageSummaryItem,
  type UsageTotals,
} from '@parley/contracts';
import { Keyset } from '@parley/kit/database';
import { UsageAccess } from '../access/usage-access';
import { fromUnits, toUnits } from '../prices/decimal';
import {
  RECORDS_NEWEST_FIRST,
  UsageRecordsRepository,
  stateOf,
  type RecordRow,
  type TotalsRow,
} from './usage-records.repository';
import { localTimestamp } from './zones';
import { UsageSummaryRepository, type SummaryRow } from './usage-summary.repository';

/** As the contract hands it over (the range resolved), or with its defaults still open (tests, jobs). */
type SummaryRequest = Omit<z.output<typeof UsageRpc.summary.request>, 'from' | 'to'> & { from?: string; to?: string };
type RecordsRequest = z.output<typeof UsageRpc.records.request>;

const OUTPUT_NAME: Record<UsageGroupKey, keyof UsageSummaryItem> = {
  bot: 'bot_id',
  model: 'model',
  provider: 'provider',
  channel: 'channel',
  user: 'user_id',
  status: 'status',
  hour: 'hour',
  day: 'day',
};

/**
 * Usage answers: who may see which bots, the range, and the shape of the answer; the SQL is in
 * UsageSummaryRepository and UsageRecordsRepository. Rollup rows whose requests all moved
 * elsewhere (a request's `started` row once it completed) net to zero and are not answered.
 */
@Injectable()
export class UsageQueries {
  constructor(
    @Inject(UsageAccess) private readonly access: UsageAccess,
    @Inject(UsageSummaryRepository) private readonly summaries: UsageSummaryRepository,
    @Inject(UsageRecordsRepository) private readonly recordTable: UsageRecordsRepository,
    @Inject(Keyset) private readonly keyset: Keyset,
  ) {}

  async summary(actor: Principal, q: SummaryRequest) {
    const bots = await this.access.restriction(actor, { bot_id: q.bot_id, user_id: q.user_id });
    const { from, to } = resolveRange(q, Date.now());
    const answer = { from: from.toISOString(), to: to.toISOString(), tz: q.tz, group_by: q.group_by };
    if (bots !== 'all' && bots.length === 0) return { ...answer, items: [] };

    const rows = await this.summaries.summarize({
      bots,
      bot_id: q.bot_id,
      user_id: q.user_id,
      from,
      to,
      tz: q.tz,
      group_by: q.group_by,
    });
    const items = mergeUnpriced(rows, q.group_by, q.tz);
    if (rows.length > MAX_SUMMARY_ROWS * 2 || items.length > MAX_SUMMARY_ROWS) {
      throw new ParleyError('VALIDATION_FAILED', `more than ${MAX_SUMMARY_ROWS} rows: narrow from/to or group_by`, {
        errors: [{ field: 'group_by', message: `more than ${MAX_SUMMARY_ROWS} rows` }],
      });
    }
    return { ...answer, items };
  }

  /** Records newest first (by `started_at`, then bot and request id), with a keyset cursor. */
  async records(actor: Principal, q: RecordsRequest): Promise<CursorPage<UsageRecordView>> {
    const bots = await this.access.restriction(actor, q);
    const { from, to } = resolveRange(q, Date.now());
    // Bound as the client sent them: `to` left out means "now" on every page.
    const filters = {
      from: q.from,
      to: q.to,
      bot_id: q.bot_id,
      session_id: q.session_id,
      user_id: q.user_id,
      status: q.status,
    };
    return this.keyset.page(
      RECORDS_NEWEST_FIRST,
      q,
      { actor, filters },
      async (position) =>
        bots !== 'all' && bots.length === 0 ? [] : this.recordTable.listPage(bots, { ...filters, from, to }, position),
      { view: recordView, key: (r) => [new Date(r.started_at).toISOString(), r.bot_id, r.request_id] },
    );
  }

  /** Totals of one session's records; the caller has established that it may read the session. */
  async sessionTotals(sessionId: string): Promise<UsageTotals> {
    const rows = await this.recordTable.sessionTotals(sessionId);
    const costs = rows
      .filter((r) => r.currency !== null)
      .map((r) => ({ currency: String(r.currency), cost: fromUnits(toUnits(r.cost ?? '0')) }));
    const sum = (field: keyof TotalsRow) => rows.reduce((n, r) => n + Number(r[field] ?? 0), 0);
    return {
      requests: sum('requests'),
      input_tokens: sum('input_tokens'),
      output_tokens: sum('output_tokens'),
      total_tokens: sum('total_tokens'),
      cost: costs.length === 1 ? costs[0].cost : null,
      currency: costs.length === 1 ? costs[0].currency : null,
      costs,
      unpriced_requests: sum('unpriced_requests'),
    };
  }
}

/**
 * Rows split by currency. A group's unpriced requests join its one priced row when there is
 * exactly one (so `cost` covers the priced part and `unpriced_requests` says what is not);
 * alone, or beside several currencies, they are a row of their own with `currency` and
 * `cost` null.
 */
function mergeUnpriced(rows: SummaryRow[], keys: UsageGroupKey[], tz: string): UsageSummaryItem[] {
  const groups = new Map<string, UsageSummaryItem[]>();
  for (const row of rows) {
    const item: UsageSummaryItem = {
      requests: Number(row.requests),
      input_tokens: Number(row.input_tokens),
      output_tokens: Number(row.output_tokens),
      total_tokens: Number(row.total_tokens),
      cost: row.currency === null ? null : fromUnits(toUnits(row.cost ?? '0')),
      currency: row.currency,
      unpriced_requests: Number(row.unpriced_requests),
    };
    for (const key of keys) {
      const value = row[OUTPUT_NAME[key]];
      (item as Record<string, unknown>)[OUTPUT_NAME[key]] =
        key === 'hour' ? localTimestamp(new Date(value as string), tz) : ((value as string | null) ?? null);
    }
    const group = keys
      .map((k) =>
        String(row[OUTPUT_NAME[k]] instanceof Date ? (row[OUTPUT_NAME[k]] as Date).getTime() : row[OUTPUT_NAME[k]]),
      )
      .join('\u0000');
    groups.set(group, [...(groups.get(group) ?? []), item]);
  }
  const out: UsageSummaryItem[] = [];
  for (const items of groups.values()) {
    const priced = items.filter((i) => i.currency !== null);
    const unpriced = items.find((i) => i.currency === null);
    if (unpriced && priced.length === 1) {
      const [target] = priced;
      target.requests += unpriced.requests;
      target.input_tokens += unpriced.input_tokens;
      target.output_tokens += unpriced.output_tokens;
      target.total_tokens += unpriced.total_tokens;
      target.unpriced_requests += unpriced.unpriced_requests;
      out.push(target);
    } else {
      out.push(...items);
    }
  }
  return out;
}

export function recordView(row: RecordRow): UsageRecordView {
  const s = stateOf(row);
  return {
    bot_id: s.botId,
    request_id: s.requestId,
    session_id: s.sessionId,
    user_id: s.userId,
    channel: s.channel,
    status: s.status,
    provider: s.provider,
    model: s.model,
    input_tokens: s.inputTokens,
    output_tokens: s.outputTokens,
    total_tokens: s.totalTokens,
    started_at: s.startedAt.toISOString(),
    completed_at: s.completedAt ? s.completedAt.toISOString() : null,
    cost: s.cost,
    currency: s.currency,
    price_id: s.priceId,
    created_at: s.createdAt.toISOString(),
    updated_at: s.updatedAt.toISOString(),
  };
}

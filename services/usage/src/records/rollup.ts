import { toUnits } from '../prices/decimal';
import type { RecordState } from './record-state';

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

export const floorHour = (t: Date) => new Date(Math.floor(t.getTime() / HOUR_MS) * HOUR_MS);
export const utcDay = (t: Date) => new Date(Math.floor(t.getTime() / DAY_MS) * DAY_MS).toISOString().slice(0, 10);
export const utcMonth = (t: Date) => t.toISOString().slice(0, 7);

/** `YYYY-MM-DDT` by UTC day number (a batch's records share a few days). */
const dayPrefixes = new Map<number, string>();
const pad2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);
const pad3 = (n: number) => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`);

/**
 * The same text as `toISOString`, in about half its time: the date part is formatted once per
 * day, the time of day by arithmetic. For the instants a record may hold (years 0001–9999).
 */
export function isoText(t: Date): string {
  const ms = t.getTime();
  const day = Math.floor(ms / DAY_MS);
  let prefix = dayPrefixes.get(day);
  if (prefix === undefined) {
    prefix = new Date(day * DAY_MS).toISOString().slice(0, 11);
    if (dayPrefixes.size >= 4096) dayPrefixes.clear();
    dayPrefixes.set(day, prefix);
  }
  let rest = ms - day * DAY_MS;
  const hours = Math.floor(rest / HOUR_MS);
  rest -= hours * HOUR_MS;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  return `${prefix}${pad2(hours)}:${pad2(minutes)}:${pad2(seconds)}.${pad3(rest - seconds * 1000)}Z`;
}

export interface HourlyKey {
  hour: Date;
  botId: string;
  provider: string;
  model: string;
  channel: string;
  status: string;
  currency: string;
}
export interface HourlyDelta extends HourlyKey {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  costUnits: bigint;
  unpricedRequests: number;
}
/**
 * A bot's usage in one UTC day and currency as a write left its `usage_daily` row: the row's
 * `revision` orders the totals of its successive writes.
 */
export interface DailyTotal {
  botId: string;
  day: string;
  currency: string;
  revision: string;
  tokens: string;
  /** A decimal. */
  cost: string;
}
export interface DailyDelta {
  botId: string;
  day: string;
  currency: string;
  requests: number;
  totalTokens: number;
  costUnits: bigint;
}

/**
 * The changes a set of record transitions makes to the hourly rollup and the daily per-bot
 * counters: each record's old contribution is taken away and its new one added, so a
 * request that moves from `started` to `completed` moves between rows without being
 * counted twice. Rows whose every sum nets to zero are left out.
 */
export class RollupDeltas {
  private readonly hourly = new Map<string, HourlyDelta>();
  private readonly daily = new Map<string, DailyDelta>();
  /** UTC day (`YYYY-MM-DD`) by the start of an hour: a batch's records share a few hours. */
  private readonly days = new Map<number, string>();

  add(before: RecordState | undefined, after: RecordState | undefined): void {
    if (before) this.contribute(before, -1);
    if (after) this.contribute(after, 1);
  }

  private contribute(r: RecordState, sign: 1 | -1): void {
    const hourMs = Math.floor(r.startedAt.getTime() / HOUR_MS) * HOUR_MS;
    const provider = r.provider ?? '';
    const model = r.model ?? '';
    const channel = r.channel ?? '';
    const currency = r.currency ?? '';
    const hourlyId = `${hourMs}\u0000${r.botId}\u0000${provider}\u0000${model}\u0000${channel}\u0000${r.status}\u0000${currency}`;
    const cost = r.cost ? toUnits(r.cost) : 0n;
    const h = this.hourly.get(hourlyId) ?? {
      hour: new Date(hourMs),
      botId: r.botId,
      provider,
      model,
      channel,
      status: r.status,
      currency,
      requests: 0,
      inputTokens: 0,
      outputTokens: 0,
      totalTokens: 0,
      costUnits: 0n,
      unpricedRequests: 0,
    };
    h.requests += sign;
    h.inputTokens += sign * r.inputTokens;
    h.outputTokens += sign * r.outputTokens;
    h.totalTokens += sign * r.totalTokens;
    h.costUnits += BigInt(sign) * cost;
    h.unpricedRequests += r.priceId ? 0 : sign;
    this.hourly.set(hourlyId, h);

    // The hour's start lies in the same UTC day as the record's start.
    let day = this.days.get(hourMs);
    if (day === undefined) {
      day = utcDay(new Date(hourMs));
      this.days.set(hourMs, day);
    }
    const dailyId = `${r.botId}\u0000${day}\u0000${currency}`;
    const d = this.daily.get(dailyId) ?? {
      botId: r.botId,
      day,
      currency,
      requests: 0,
      totalTokens: 0,
      costUnits: 0n,
    };
    d.requests += sign;
    d.totalTokens += sign * r.totalTokens;
    d.costUnits += BigInt(sign) * cost;
    this.daily.set(dailyId, d);
  }

  /** Hourly rows to change, in key order (so concurrent writers lock rows in one order). */
  hourlyRows(): HourlyDelta[] {
    return [...this.hourly.entries()]
      .filter(
        ([, d]) => d.requests || d.inputTokens || d.outputTokens || d.totalTokens || d.costUnits || d.unpricedRequests,
      )
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, d]) => d);
  }

  dailyRows(): DailyDelta[] {
    return [...this.daily.entries()]
      .filter(([, d]) => d.requests || d.totalTokens || d.costUnits)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, d]) => d);
  }
}

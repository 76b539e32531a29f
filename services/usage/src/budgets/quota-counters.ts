import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RedisKeys, type BudgetPeriod } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { USAGE_CONFIG, type UsageConfig } from '../config';
import { toUnits } from '../prices/decimal';
import type { DailyTotal } from '../records/rollup';
import { BudgetsRepository } from './budgets.repository';
import { dayOf } from './periods';

export interface PeriodUsage {
  tokens: number;
  /** Cost per currency, in units of 10^-12. */
  costUnits: Map<string, bigint>;
}

/**
 * Merges daily totals into counters. KEYS are counters; ARGV[1] is the TTL a counter gets when
 * this creates it, ARGV[2] is '1' when the totals are all of the counters' period (a rebuild
 * from Postgres: the counters are then complete). Then, per key in order, its number of rows
 * and, per row, its field (`day|currency`) and value (`revision tokens cost`). A row replaces
 * the field only if its revision is newer, so totals may arrive in any order. A rebuild answers
 * its (single) counter's fields.
 */
const MERGE = `
local complete = ARGV[2] == '1'
local at = 3
for k = 1, #KEYS do
  local key = KEYS[k]
  local fresh = redis.call('exists', key) == 0
  local count = tonumber(ARGV[at])
  at = at + 1
  for i = 1, count do
    local field, value = ARGV[at], ARGV[at + 1]
    at = at + 2
    local held = redis.call('hget', key, field)
    if not held or tonumber(string.match(held, '^%d+')) < tonumber(string.match(value, '^%d+')) then
      redis.call('hset', key, field, value)
    end
  end
  if complete then redis.call('hset', key, 'complete', '1') end
  if fresh then redis.call('expire', key, ARGV[1]) end
end
if complete then return redis.call('hgetall', KEYS[1]) end
return {}`;

/** Most counters remembered as stale; beyond, they are left to expire (USAGE_QUOTA_CACHE_SECONDS). */
const MAX_MISSED_KEYS = 10_000;

type CountingRedis = Redis & {
  usageTotals(keyCount: number, ...keysThenArgs: string[]): Promise<string[]>;
};

/**
 * Each bot's usage in its current day and month, as Redis counters: a hash per bot and period
 * holding each day's totals per currency with the revision of the `usage_daily` row they
 * came from. After every commit the consumer hands over the totals its write left; a read
 * that finds the counters incomplete (lost, expired, or so far holding only such totals)
 * merges in every total of the period from Postgres. Newer revisions win either way, so a
 * commit racing a rebuild is neither lost nor counted twice. The counters live
 * `USAGE_QUOTA_CACHE_SECONDS`, which bounds any drift from a crash between commit and update
 * (until then, the row's next write corrects it). Redis away: answers come from Postgres, and
 * the counters that missed totals meanwhile are dropped once it is back, so they are rebuilt.
 */
@Injectable()
export class QuotaCounters {
  private readonly redis: CountingRedis;
  private readonly prefix: string;
  /** Counters that missed totals (Redis away), to drop once it answers again. */
  private readonly missed = new Set<string>();
  /** Totals are being missed (logged once each way). */
  private missing = false;

  constructor(
    @Inject(REDIS) redis: Redis,
    @Inject(BudgetsRepository) private readonly budgets: BudgetsRepository,
    @Inject(USAGE_CONFIG) private readonly config: UsageConfig,
    @Inject(KIT_OPTIONS) options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    redis.defineCommand('usageTotals', { lua: MERGE });
    this.redis = redis as CountingRedis;
    this.prefix = options.config.NATS_SUBJECT_PREFIX;
  }

  key(botId: string, period: BudgetPeriod, start: Date): string {
    return RedisKeys.usageQuota(this.prefix, botId, period, period === 'day' ? dayOf(start) : dayOf(start).slice(0, 7));
  }

  /** Merges the totals a commit left into the bot's day and month counters. */
  async record(totals: DailyTotal[]): Promise<void> {
    const perKey = new Map<string, string[]>();
    try {
      for (const t of totals) {
        const day = new Date(`${t.day}T00:00:00Z`);
        for (const key of [this.key(t.botId, 'day', day), this.key(t.botId, 'month', day)]) {
          const rows = perKey.get(key) ?? [];
          rows.push(...row(t));
          perKey.set(key, rows);
        }
      }
    } catch (error) {
      // Totals it cannot read (never from Postgres' own text): the counters catch up on the rows' next writes.
      this.logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'quota totals not understood');
      return;
    }
    if (perKey.size === 0) return;
    if (this.missed.size > 0) await this.forgetMissed();
    try {
      // One script for every counter of the batch: a single command, not one per key.
      const keys = [...perKey.keys()];
      const args = [String(this.config.USAGE_QUOTA_CACHE_SECONDS), '0'];
      for (const rows of perKey.values()) args.push(String(rows.length / 2), ...rows);
      await this.redis.usageTotals(keys.length, ...keys, ...args);
      if (this.missing) {
        this.missing = false;
        this.logger.info('quota counters updated in Redis again');
      }
    } catch (error) {
      // These counters now lack the totals: dropped once Redis answers, they are rebuilt.
      for (const key of perKey.keys()) if (this.missed.size < MAX_MISSED_KEYS) this.missed.add(key);
      if (!this.missing) {
        this.missing = true;
        this.logger.warn(
          { err: error instanceof Error ? error.message : String(error) },
          'quota counters not updated while Redis is away; they are rebuilt from Postgres once it is back',
        );
      }
    }
  }

  /** Drops the counters that missed totals while Redis was away (they are rebuilt on the next read). */
  private async forgetMissed(): Promise<void> {
    if (this.missed.size === 0) return;
    const keys = [...this.missed];
    try {
      await this.redis.del(...keys);
      for (const key of keys) this.missed.delete(key);
    } catch {
      // Still away: kept for the next time.
    }
  }

  /** Usage of the bot in the period starting at `start`: from Redis, or rebuilt there from Postgres. */
  async read(botId: string, period: BudgetPeriod, start: Date, end: Date): Promise<PeriodUsage> {
    const key = this.key(botId, period, start);
    if (this.missed.size > 0) await this.forgetMissed();
    if (this.missed.has(key)) return sum(await this.budgets.dailyTotals(botId, start, end));
    try {
      const cached = await this.redis.hgetall(key);
      if (cached.complete !== undefined) return parse(cached);
    } catch {
      return sum(await this.budgets.dailyTotals(botId, start, end));
    }
    const totals = await this.budgets.dailyTotals(botId, start, end);
    const rows = totals.flatMap(row);
    try {
      const stored = await this.redis.usageTotals(
        1,
        key,
        String(this.config.USAGE_QUOTA_CACHE_SECONDS),
        '1',
        String(rows.length / 2),
        ...rows,
      );
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < stored.length; i += 2) fields[stored[i]] = stored[i + 1];
      return parse(fields);
    } catch {
      return sum(totals);
    }
  }
}

/** A total as the counters hold it: field `day|currency`, value `revision tokens cost-units`. */
function row(t: DailyTotal): [string, string] {
  return [`${t.day}|${t.currency}`, `${t.revision} ${t.tokens} ${toUnits(t.cost)}`];
}

function sum(totals: DailyTotal[]): PeriodUsage {
  return parse(Object.fromEntries(totals.map(row)));
}

/** The period's usage from a counter's fields (`complete` and fields of another shape are passed over). */
function parse(fields: Record<string, string>): PeriodUsage {
  let tokens = 0n;
  const costUnits = new Map<string, bigint>();
  for (const [field, value] of Object.entries(fields)) {
    const bar = field.indexOf('|');
    const parts = value.split(' ');
    if (bar < 0 || parts.length !== 3) continue;
    const currency = field.slice(bar + 1);
    tokens += BigInt(parts[1]);
    if (currency) costUnits.set(currency, (costUnits.get(currency) ?? 0n) + BigInt(parts[2]));
  }
  return { tokens: Number(tokens), costUnits };
}

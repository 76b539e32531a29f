import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RedisKeys, type BudgetPeriod } from '@parley/contracts';
import { KIT_OPTIONS, LOGGER, REDIS, type KitOptions, type Logger } from '@parley/kit';
import { USAGE_CONFIG, type UsageConfig } from '../config';
import { toUnits } from '../prices/decimal';
import type { DailyDelta } from '../records/rollup';
import { BudgetsRepository } from './budgets.repository';
import { dayOf } from './periods';

export interface PeriodUsage {
  tokens: number;
  /** Cost per currency, in units of 10^-12. */
  costUnits: Map<string, bigint>;
}

/**
 * For each key that exists, HINCRBY its field pairs (a missing key is rebuilt from Postgres).
 * ARGV holds, per key in order, its number of pairs and then the pairs. Answers the keys an
 * increment failed on (beyond 64 bits), to be dropped and rebuilt.
 */
const INCREMENT_IF_PRESENT = `
local failed = {}
local at = 1
for k = 1, #KEYS do
  local count = tonumber(ARGV[at])
  local first = at + 1
  at = first + 2 * count
  if redis.call('exists', KEYS[k]) == 1 then
    for i = first, at - 1, 2 do
      local answer = redis.pcall('hincrby', KEYS[k], ARGV[i], ARGV[i + 1])
      if type(answer) == 'table' and answer.err then
        failed[#failed + 1] = KEYS[k]
        break
      end
    end
  end
end
return failed`;
/** Sets the fields and TTL if the key is absent; answers the key's fields either way. */
const SET_IF_ABSENT = `
if redis.call('exists', KEYS[1]) == 0 then
  redis.call('hset', KEYS[1], unpack(ARGV, 2))
  redis.call('expire', KEYS[1], ARGV[1])
end
return redis.call('hgetall', KEYS[1])`;

/** Most counters remembered as stale; beyond, they are left to expire (USAGE_QUOTA_CACHE_SECONDS). */
const MAX_MISSED_KEYS = 10_000;

type CountingRedis = Redis & {
  usageIncrement(keyCount: number, ...keysThenArgs: string[]): Promise<string[]>;
  usageRebuild(key: string, ttl: string, ...fields: string[]): Promise<string[]>;
};

/**
 * Each bot's usage in its current day and month, as Redis counters: bumped by the consumer
 * after every commit, rebuilt from the daily counters in Postgres whenever Redis has lost
 * them (or they expired: they live `USAGE_QUOTA_CACHE_SECONDS`, which bounds any drift from a
 * crash between commit and bump). Redis away: answers come from Postgres, and the counters
 * that missed deltas meanwhile are dropped once it is back, so they are rebuilt.
 */
@Injectable()
export class QuotaCounters {
  private readonly redis: CountingRedis;
  private readonly prefix: string;
  /** Counters whose deltas could not be added (Redis away), to drop once it answers again. */
  private readonly missed = new Set<string>();
  /** Deltas are being missed (logged once each way). */
  private missing = false;

  constructor(
    @Inject(REDIS) redis: Redis,
    @Inject(BudgetsRepository) private readonly budgets: BudgetsRepository,
    @Inject(USAGE_CONFIG) private readonly config: UsageConfig,
    @Inject(KIT_OPTIONS) options: KitOptions,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {
    redis.defineCommand('usageIncrement', { lua: INCREMENT_IF_PRESENT });
    redis.defineCommand('usageRebuild', { numberOfKeys: 1, lua: SET_IF_ABSENT });
    this.redis = redis as CountingRedis;
    this.prefix = options.config.NATS_SUBJECT_PREFIX;
  }

  key(botId: string, period: BudgetPeriod, start: Date): string {
    return RedisKeys.usageQuota(this.prefix, botId, period, period === 'day' ? dayOf(start) : dayOf(start).slice(0, 7));
  }

  /** Adds committed deltas to the counters that exist. */
  async add(deltas: DailyDelta[]): Promise<void> {
    const perKey = new Map<string, Map<string, bigint>>();
    const bump = (key: string, field: string, by: bigint) => {
      if (by === 0n) return;
      const fields = perKey.get(key) ?? new Map<string, bigint>();
      fields.set(field, (fields.get(field) ?? 0n) + by);
      perKey.set(key, fields);
    };
    for (const d of deltas) {
      const day = new Date(`${d.day}T00:00:00Z`);
      for (const key of [this.key(d.botId, 'day', day), this.key(d.botId, 'month', day)]) {
        bump(key, 'tokens', BigInt(d.totalTokens));
        if (d.currency) bump(key, `cost:${d.currency}`, d.costUnits);
      }
    }
    if (perKey.size === 0) return;
    if (this.missed.size > 0) await this.forgetMissed();
    try {
      // One script for every counter of the batch: a single command, not one per key.
      const keys = [...perKey.keys()];
      const args: string[] = [];
      for (const fields of perKey.values()) {
        args.push(String(fields.size));
        for (const [field, by] of fields) args.push(field, by.toString());
      }
      const failed = await this.redis.usageIncrement(keys.length, ...keys, ...args);
      // A counter that cannot take the increment (beyond 64 bits) is dropped and rebuilt.
      if (failed.length > 0) await this.redis.del(...failed);
      if (this.missing) {
        this.missing = false;
        this.logger.info('quota counters updated in Redis again');
      }
    } catch (error) {
      // These counters now lack the deltas: dropped once Redis answers, they are rebuilt.
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

  /** Drops the counters that missed deltas while Redis was away (they are rebuilt on the next read). */
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
    if (this.missed.has(key)) return this.fromPostgres(botId, start, end);
    try {
      const cached = await this.redis.hgetall(key);
      if (cached.tokens !== undefined) return parse(cached);
    } catch {
      return this.fromPostgres(botId, start, end);
    }
    const usage = await this.fromPostgres(botId, start, end);
    const fields = [
      'tokens',
      String(usage.tokens),
      ...[...usage.costUnits].flatMap(([c, u]) => [`cost:${c}`, u.toString()]),
    ];
    try {
      const stored = await this.redis.usageRebuild(key, String(this.config.USAGE_QUOTA_CACHE_SECONDS), ...fields);
      const record: Record<string, string> = {};
      for (let i = 0; i + 1 < stored.length; i += 2) record[stored[i]] = stored[i + 1];
      return parse(record);
    } catch {
      return usage;
    }
  }

  private async fromPostgres(botId: string, start: Date, end: Date): Promise<PeriodUsage> {
    const rows = await this.budgets.dailyUsage(botId, start, end);
    const usage: PeriodUsage = { tokens: 0, costUnits: new Map() };
    for (const row of rows) {
      usage.tokens += Number(row.tokens);
      if (row.currency) usage.costUnits.set(row.currency, toUnits(row.cost));
    }
    return usage;
  }
}

function parse(fields: Record<string, string>): PeriodUsage {
  const usage: PeriodUsage = { tokens: Number(fields.tokens ?? 0), costUnits: new Map() };
  for (const [field, value] of Object.entries(fields)) {
    if (field.startsWith('cost:')) usage.costUnits.set(field.slice(5), BigInt(value));
  }
  return usage;
}

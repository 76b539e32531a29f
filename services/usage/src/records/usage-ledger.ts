import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import { PriceBook } from '../prices/price-book';
import { PricesRepository } from '../prices/prices.repository';
import type { RecordState } from './record-state';
import { RollupDeltas, type DailyTotal } from './rollup';
import { UsageRecordsRepository } from './usage-records.repository';

export interface RecordChange {
  before: RecordState | undefined;
  after: RecordState;
}

/** A concurrent writer changed what this transaction read (a record, the prices): run it again. */
export class RaceLost extends Error {
  readonly code = '40001';
  constructor(what: string) {
    super(`lost a race: ${what}`);
  }
}

const keyOf = (r: { botId: string; requestId: string }) => `${r.botId}\u0000${r.requestId}`;

export interface PricedBook {
  stamp: string;
  book: PriceBook;
}

/**
 * Writes usage records together with what is derived from them (the hourly rollup and the
 * daily per-bot counters) inside the caller's transaction, so they never disagree. A batch
 * takes two statements: `claim` (insert what is new, lock what exists) and `write` (update,
 * rollup, counters); prices come from memory and are checked to be current in `write`.
 */
@Injectable()
export class UsageLedger {
  private cached: PricedBook | undefined;

  constructor(
    @Inject(UsageRecordsRepository) private readonly records: UsageRecordsRepository,
    @Inject(PricesRepository) private readonly priceTable: PricesRepository,
  ) {}

  /** The price versions as last read (read now if never). `write` tells when they are out of date. */
  async book(em: EntityManager): Promise<PricedBook> {
    if (this.cached) return this.cached;
    return this.load(em, await this.priceTable.stamp(em));
  }

  /** The price versions in force, for a transaction that holds the pricing lock. */
  async prices(tx: EntityManager): Promise<PricedBook> {
    const stamp = await this.priceTable.stamp(tx);
    return this.cached?.stamp === stamp ? this.cached : this.load(tx, stamp);
  }

  private async load(em: EntityManager, stamp: string): Promise<PricedBook> {
    const book = new PriceBook(await this.priceTable.versions(em));
    this.cached = { stamp, book };
    return this.cached;
  }

  /**
   * Takes the pricing lock, inserts `fresh` (each record as the batch makes it from nothing)
   * where no record exists yet, and locks and answers the records that do.
   */
  async claim(
    tx: EntityManager,
    fresh: RecordState[],
  ): Promise<{ inserted: Set<string>; existing: Map<string, RecordState> }> {
    const claimed = await this.records.claim(tx, fresh);
    const existing = new Map<string, RecordState>();
    for (const state of claimed.existing) existing.set(keyOf(state), state);
    if (claimed.inserted + existing.size < fresh.length) {
      throw new RaceLost(
        `${fresh.length - claimed.inserted - existing.size} usage records were created by a concurrent writer`,
      );
    }
    // What was not found existing was inserted: the statement's snapshot cannot see its own inserts.
    const inserted = new Set(fresh.map(keyOf).filter((id) => !existing.has(id)));
    return { inserted, existing };
  }

  /**
   * Writes the changes (records in `created` are already inserted by `claim`) with their
   * rollup deltas; returns the changed bots that have a budget and the daily totals the
   * deltas left (for the quota counters). Throws
   * RaceLost, after refreshing the prices, if they changed since `book` was read.
   */
  async write(
    tx: EntityManager,
    changes: RecordChange[],
    prices: PricedBook,
  ): Promise<{ budgeted: string[]; daily: DailyTotal[] }> {
    const deltas = new RollupDeltas();
    for (const c of changes) deltas.add(c.before, c.after);
    const updates = changes.filter((c) => c.before).map((c) => c.after);
    const bots = [...new Set(changes.map((c) => c.after.botId))];
    const result = await this.records.write(tx, updates, deltas, bots);
    if (result.stamp !== prices.stamp) {
      await this.load(tx, result.stamp);
      throw new RaceLost('the prices changed while the batch was priced');
    }
    if (result.changed !== updates.length) {
      throw new Error(`expected to change ${updates.length} usage records, changed ${result.changed}`);
    }
    return { budgeted: result.budgeted, daily: result.daily };
  }
}

export { keyOf as recordKey };

import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { BackgroundTask, LOGGER, isConflictError, type Logger } from '@parley/kit';
import { OutboxRelay, allowLongStatements } from '@parley/kit/database';
import { BudgetWatch } from '../budgets/budget-watch';
import { QuotaCounters } from '../budgets/quota-counters';
import { priced, samePricing } from '../records/record-state';
import type { DailyTotal } from '../records/rollup';
import { UsageLedger } from '../records/usage-ledger';
import { UsageRecordsRepository } from '../records/usage-records.repository';
import { PricesRepository } from './prices.repository';

const CHUNK = 500;
const POLL_MS = 30_000;

/**
 * Works through re-pricing jobs: each step locks the next chunk of a job's records (in
 * `started_at` order), prices them with the versions now in force, writes what changed with
 * its rollup deltas, and records how far it got, all in one transaction. Jobs live in
 * Postgres, so one interrupted by a crash is resumed by any instance; `skip locked` keeps
 * two instances off the same job.
 */
@Injectable()
export class Repricer implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly task = new BackgroundTask(() => this.pass(), POLL_MS);

  constructor(
    @Inject(MikroORM) private readonly orm: MikroORM,
    @Inject(UsageLedger) private readonly ledger: UsageLedger,
    @Inject(PricesRepository) private readonly priceTable: PricesRepository,
    @Inject(UsageRecordsRepository) private readonly records: UsageRecordsRepository,
    @Inject(BudgetWatch) private readonly budgets: BudgetWatch,
    @Inject(QuotaCounters) private readonly counters: QuotaCounters,
    @Inject(OutboxRelay) private readonly outbox: OutboxRelay,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  onApplicationBootstrap(): void {
    this.task.start();
  }

  /** Asks for a pass now (after prices were stored). */
  kick(): void {
    this.task.kick();
  }

  private async pass(): Promise<void> {
    try {
      while (!this.task.isStopped && (await this.stepWithRetry())) {
        // one chunk per transaction, until no job is left
      }
    } catch (error) {
      this.logger.warn(
        { err: error instanceof Error ? error.message : String(error) },
        're-pricing failed; will retry',
      );
    }
  }

  private async stepWithRetry(): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.step();
      } catch (error) {
        if (!isConflictError(error) || attempt >= 5) throw error;
      }
    }
  }

  /** One chunk of one job; false when there is no job left. */
  async step(): Promise<boolean> {
    const now = new Date();
    const done = await this.orm.em.fork().transactional(async (tx) => {
      await allowLongStatements(tx);
      const job = await this.priceTable.takeRepriceJob(tx);
      if (!job) return undefined;
      await this.priceTable.lockPricing(tx, 'shared');
      const states = await this.records.repricingChunk(tx, job, CHUNK);
      const prices = await this.ledger.prices(tx);
      const changes = states
        .map((before) => ({ before, after: { ...priced(before, prices.book), updatedAt: now } }))
        .filter((c) => !samePricing(c.before, c.after));
      const { daily, budgeted } = await this.ledger.write(tx, changes, prices);
      const announced = budgeted.length > 0 ? await this.budgets.check(tx, budgeted, now) : 0;
      const last = states.at(-1);
      if (states.length < CHUNK || !last) {
        await this.priceTable.finishRepriceJob(tx, job.id);
      } else {
        await this.priceTable.advanceRepriceJob(tx, job.id, last);
      }
      return { daily, announced, repriced: changes.length };
    });
    if (!done) return false;
    await this.afterCommit(done.daily, done.announced);
    if (done.repriced > 0) this.logger.info({ repriced: done.repriced }, 'records re-priced');
    return true;
  }

  private async afterCommit(daily: DailyTotal[], announced: number): Promise<void> {
    if (announced > 0) this.outbox.kick();
    await this.counters.record(daily);
  }

  async onModuleDestroy(): Promise<void> {
    await this.task.stop();
  }
}

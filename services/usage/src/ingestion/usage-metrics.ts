import { Inject, Injectable } from '@nestjs/common';
import { Counter, Histogram } from 'prom-client';
import { Metrics } from '@parley/kit';

export type IngestKind = 'usage' | 'activity';

/** What ingestion adds to the service's `/metrics`. */
@Injectable()
export class UsageMetrics {
  /** Events stored, by what they did: inserted, updated, duplicate (counted once), stale. */
  readonly events: Counter<'kind' | 'outcome'>;
  /** From the stream storing an event to its transaction committing. */
  readonly delay: Histogram<'kind'>;
  readonly budgetsExceeded: Counter;

  constructor(@Inject(Metrics) metrics: Metrics) {
    const registers = [metrics.registry];
    this.events = new Counter({
      name: 'parley_usage_events_total',
      help: 'Usage and activity events written, by kind and outcome (inserted, updated, duplicate, stale)',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.delay = new Histogram({
      name: 'parley_usage_ingest_delay_seconds',
      help: 'Time from the stream storing an event to the commit that records it',
      labelNames: ['kind'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.budgetsExceeded = new Counter({
      name: 'parley_usage_budgets_exceeded_total',
      help: 'Budgets announced as exceeded (evt.usage.budget_exceeded)',
      registers,
    });
  }

  committed(kind: IngestKind, storedAt: number[], outcomes: Map<string, number>): void {
    const now = Date.now();
    const delay = this.delay.labels({ kind });
    for (const at of storedAt) delay.observe(Math.max(0, now - at) / 1000);
    for (const [outcome, n] of outcomes) if (n > 0) this.events.inc({ kind, outcome }, n);
  }
}

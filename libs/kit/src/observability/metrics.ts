import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One Prometheus registry per process, labelled with the service name. */
export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly natsRequests: Counter<'subject' | 'outcome'>;
  readonly natsDuration: Histogram<'subject'>;
  readonly natsClientRequests: Counter<'subject' | 'outcome'>;
  readonly eventsProcessed: Counter<'consumer' | 'outcome'>;
  readonly redeliveries: Counter<'consumer'>;
  readonly deadLetters: Counter<'subject' | 'code'>;
  readonly outboxPublished: Counter;
  readonly outboxBacklog: Gauge;
  readonly consumerPending: Gauge<'consumer'>;
  readonly consumerBatchSize: Histogram<'consumer'>;
  readonly consumerBatchDuration: Histogram<'consumer'>;
  readonly unexpectedErrors: Counter<'kind'>;
  readonly liveDropped: Counter<'reason'>;
  /** Counts the outbox rows not yet relayed, read when Prometheus scrapes. */
  outboxBacklogSource: (() => Promise<number>) | undefined;

  constructor(readonly service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry, prefix: 'parley_process_' });
    const registers = [this.registry];
    this.httpRequests = new Counter({
      name: 'parley_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'parley_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.natsRequests = new Counter({
      name: 'parley_nats_requests_total',
      help: 'NATS requests handled, by subject and outcome (ok or an error code)',
      labelNames: ['subject', 'outcome'],
      registers,
    });
    this.natsDuration = new Histogram({
      name: 'parley_nats_request_duration_seconds',
      help: 'NATS request handling latency',
      labelNames: ['subject'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.natsClientRequests = new Counter({
      name: 'parley_nats_client_requests_total',
      help: 'NATS requests sent, by subject and outcome',
      labelNames: ['subject', 'outcome'],
      registers,
    });
    this.eventsProcessed = new Counter({
      name: 'parley_events_processed_total',
      help: 'JetStream messages handled by a consumer, by outcome',
      labelNames: ['consumer', 'outcome'],
      registers,
    });
    this.redeliveries = new Counter({
      name: 'parley_consumer_redeliveries_total',
      help: 'JetStream messages received again after a failed or timed-out delivery',
      labelNames: ['consumer'],
      registers,
    });
    this.deadLetters = new Counter({
      name: 'parley_dead_letters_total',
      help: 'Messages sent to a dead-letter subject, by the reason code',
      labelNames: ['subject', 'code'],
      registers,
    });
    this.outboxPublished = new Counter({
      name: 'parley_outbox_published_total',
      help: 'Outbox rows relayed to JetStream',
      registers,
    });
    const backlog = () => this.outboxBacklogSource?.() ?? Promise.resolve(0);
    this.outboxBacklog = new Gauge({
      name: 'parley_outbox_backlog',
      help: 'Outbox rows not yet relayed',
      registers,
      async collect() {
        this.set(await backlog().catch(() => 0));
      },
    });
    this.consumerPending = new Gauge({
      name: 'parley_consumer_pending',
      help: 'JetStream messages not yet delivered to a durable consumer (lag)',
      labelNames: ['consumer'],
      registers,
    });
    this.consumerBatchSize = new Histogram({
      name: 'parley_consumer_batch_size',
      help: 'Messages handled together by a batch consumer',
      labelNames: ['consumer'],
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers,
    });
    this.consumerBatchDuration = new Histogram({
      name: 'parley_consumer_batch_duration_seconds',
      help: 'Time to handle one batch, from delivery to ack',
      labelNames: ['consumer'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.unexpectedErrors = new Counter({
      name: 'parley_unexpected_errors_total',
      help: 'Errors no handler expected (unhandled rejections, uncaught exceptions), logged and survived',
      labelNames: ['kind'],
      registers,
    });
    this.liveDropped = new Counter({
      name: 'parley_live_messages_dropped_total',
      help: 'Live fan-out messages dropped because they could not be read',
      labelNames: ['reason'],
      registers,
    });
  }
}

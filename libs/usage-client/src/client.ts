import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect, type Msg, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import {
  ErrorPayloadSchema,
  QuotaCheckRpc,
  activityMsgId,
  activitySubject,
  prefixed,
  usageMsgId,
  usageSubject,
  type Quota,
} from '@parley/contracts';
import { ParleyRequestError, UsageClientClosedError } from './errors';
import { resolveOptions, type ResolvedOptions, type UsageClientOptions } from './options';
import { validateActivity, validateUsage, type ActivityReport, type UsageReport } from './reports';
import { backoffMs, isNoResponders, isRetryable, sleep } from './retry';
import { Slots } from './slots';

/** The header that marks a Parley reply as an error payload rather than a result. */
export const PARLEY_ERROR_HEADER = 'Parley-Error';

/** What JetStream acknowledged for one report. */
export interface Receipt {
  /** The stream sequence the event is stored at. */
  seq: number;
  /** The stream had already stored this Nats-Msg-Id (an earlier report of the same event): counted once. */
  duplicate: boolean;
}

export type UsageClientConnectOptions = UsageClientOptions & { connect?: Partial<NodeConnectionOptions> };

/** Reports a bot's LLM usage and activity to Parley over NATS JetStream, and reads its quota. */
export class UsageClient {
  private readonly options: ResolvedOptions;
  private readonly js: JetStreamClient;
  private readonly slots: Slots;
  private ownsConnection = false;
  private active = 0;
  private idle: (() => void)[] = [];
  private closing: Promise<void> | undefined;

  /** Uses a connection the bot owns; `close()` leaves it open. */
  constructor(
    private readonly nc: NatsConnection,
    options: UsageClientOptions,
  ) {
    this.options = resolveOptions(options);
    this.js = jetstream(nc, { timeout: this.options.publishTimeoutMs });
    this.slots = new Slots(this.options.maxPending);
  }

  /** Opens a connection of its own (reconnecting without limit); `close()` drains it. */
  static async connect(servers: string | string[], options: UsageClientConnectOptions): Promise<UsageClient> {
    const { connect: connectOptions, ...clientOptions } = options;
    resolveOptions(clientOptions);
    const nc = await connect({
      name: `parley-usage-client:${clientOptions.botId}`,
      maxReconnectAttempts: -1,
      ...connectOptions,
      servers,
    });
    const client = new UsageClient(nc, clientOptions);
    client.ownsConnection = true;
    return client;
  }

  get botId(): string {
    return this.options.botId;
  }

  /** Reports in flight or waiting for a slot. */
  get pending(): number {
    return this.active;
  }

  /** Reports holding a slot: publishing, awaiting the ack, or waiting to retry. Never more than `maxPending`. */
  get inFlight(): number {
    return this.slots.taken;
  }

  /**
   * Publishes one usage event on `usage.events.<bot_id>` with Nats-Msg-Id `<bot_id>:<request_id>:<status>`.
   * Rejects with UsageReportError (nothing published) when the event is invalid.
   */
  async reportUsage(event: UsageReport): Promise<Receipt> {
    this.assertOpen();
    const parsed = validateUsage(this.options.botId, event);
    return this.publish(usageSubject(parsed.bot_id), JSON.stringify(parsed), usageMsgId(parsed));
  }

  /**
   * Publishes one activity event on `activity.events.<bot_id>` with Nats-Msg-Id `<bot_id>:<event_id>`.
   * Rejects with UsageReportError (nothing published) when the event is invalid.
   */
  async reportActivity(event: ActivityReport): Promise<Receipt> {
    this.assertOpen();
    const parsed = validateActivity(this.options.botId, event);
    return this.publish(activitySubject(parsed.bot_id), JSON.stringify(parsed), activityMsgId(parsed));
  }

  /** Asks `usage.quota.check` for this bot's quota; an error answer throws ParleyRequestError. */
  async checkQuota(): Promise<Quota> {
    const subject = prefixed(this.options.subjectPrefix, QuotaCheckRpc.subject);
    const timeout = this.options.requestTimeoutMs;
    let reply: Msg;
    try {
      reply = await this.nc.request(subject, JSON.stringify({ bot_id: this.options.botId }), { timeout });
    } catch (error) {
      if (error instanceof Error && error.name === 'TimeoutError') {
        throw new ParleyRequestError(
          {
            code: 'UPSTREAM_TIMEOUT',
            status: 504,
            detail: `no answer on ${subject} within ${timeout} ms`,
            retryable: true,
          },
          { cause: error },
        );
      }
      if (isNoResponders(error)) {
        throw new ParleyRequestError(
          { code: 'UPSTREAM_UNAVAILABLE', status: 503, detail: `no service answers ${subject}`, retryable: true },
          { cause: error },
        );
      }
      throw error;
    }
    const body = decodeJson(reply);
    if (reply.headers?.has(PARLEY_ERROR_HEADER)) {
      const payload = ErrorPayloadSchema.safeParse(body.ok ? body.value : undefined);
      if (payload.success) throw new ParleyRequestError(payload.data);
      throw new ParleyRequestError({
        code: reply.headers.get(PARLEY_ERROR_HEADER) || 'INTERNAL',
        status: 500,
        detail: `${subject} answered an error without a valid error payload`,
        retryable: false,
      });
    }
    const quota = body.ok ? QuotaCheckRpc.response.safeParse(body.value) : undefined;
    if (!quota?.success) {
      throw new ParleyRequestError(
        { code: 'INTERNAL', status: 500, detail: `${subject} answered out of contract`, retryable: false },
        { cause: quota?.error },
      );
    }
    return quota.data;
  }

  /** Resolves when no report is in flight or waiting (whether they succeeded or not). */
  flush(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idle.push(resolve));
  }

  /** Takes no more reports, waits for the pending ones, and drains the connection if the client opened it. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flush();
      if (this.ownsConnection && !this.nc.isClosed()) {
        await this.nc.drain().catch(() => this.nc.close());
      }
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new UsageClientClosedError();
  }

  private async publish(subject: string, payload: string, msgID: string): Promise<Receipt> {
    this.active++;
    try {
      // Taken synchronously when a slot is free, so `inFlight` is exact the moment the call returns.
      if (!this.slots.tryAcquire()) await this.slots.acquire();
      try {
        return await this.publishWithRetry(prefixed(this.options.subjectPrefix, subject), payload, msgID);
      } finally {
        this.slots.release();
      }
    } finally {
      this.active--;
      if (this.active === 0) {
        const waiters = this.idle;
        this.idle = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  /** Publishes under the same Nats-Msg-Id until acknowledged, a lasting error, or the retry horizon. */
  private async publishWithRetry(subject: string, payload: string, msgID: string): Promise<Receipt> {
    const deadline = Date.now() + this.options.retryHorizonMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this.js.publish(subject, payload, { msgID, timeout: this.options.publishTimeoutMs });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (error) {
        const left = deadline - Date.now();
        if (left <= 0 || !isRetryable(error, this.nc.isClosed())) throw error;
        await sleep(Math.min(backoffMs(attempt), left));
      }
    }
  }
}

function decodeJson(msg: Msg): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: msg.json<unknown>() };
  } catch {
    return { ok: false };
  }
}

import { readFileSync } from 'node:fs';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import {
  connect,
  credsAuthenticator,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import {
  ErrorPayloadSchema,
  QuotaCheckRpc,
  activityMsgId,
  activitySubject,
  botInboxPrefix,
  prefixed,
  usageMsgId,
  usageSubject,
  type Quota,
} from '@parley/contracts';
import {
  CredentialsError,
  CredentialsRenewer,
  fetchNatsCredentials,
  parseCreds,
  resolveCredentialsOptions,
  type CredentialsOptions,
  type IssuedCredentials,
} from './credentials';
import { ParleyRequestError, UsageClientClosedError } from './errors';
import { ConnectionInterruptedError, ConnectionWatch } from './link';
import { resolveOptions, type ResolvedOptions, type UsageClientOptions } from './options';
import { validateActivity, validateUsage, type ActivityReport, type UsageReport } from './reports';
import { backoffMs, isNoResponders, isRetryable } from './retry';
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

export interface UsageClientConnectOptions extends UsageClientOptions {
  /** Any `@nats-io/transport-node` connection option; `servers` is the first argument of `connect`. */
  connect?: Partial<NodeConnectionOptions>;
  /**
   * Get NATS credentials from the gateway with the bot's API key, and renew them before they expire
   * (after `renewAfter` of their lifetime, trying again with backoff when that fails).
   */
  credentials?: CredentialsOptions;
  /** A NATS credentials file kept fresh by something else: read again on every (re)connect. */
  credsFile?: string;
  /**
   * Told when a renewal of the credentials fails (a CredentialsError, `retryable` false for a refusal)
   * and of errors the NATS server sends the connection (e.g. a refused permission or an expired user).
   * Default: a process warning.
   */
  onError?: (error: Error) => void;
}

/** The credentials a client connected with (`credentials` option): public parts only. */
export interface CredentialsInfo {
  publicKey: string;
  expiresAt: Date;
  inboxPrefix: string;
  publish: string[];
  subscribe: string[];
}

/** Connection options that authenticate, and so may not be given with `credentials` or `credsFile`. */
const AUTH_OPTIONS = ['authenticator', 'user', 'pass', 'token'] as const;

const warn = (error: Error) => {
  process.emitWarning(error.message, { type: `UsageClient${error.name}` });
};

/** Reports a bot's LLM usage and activity to Parley over NATS JetStream, and reads its quota. */
export class UsageClient {
  private readonly options: ResolvedOptions;
  private readonly js: JetStreamClient;
  private readonly slots: Slots;
  private ownsConnection = false;
  private active = 0;
  private idle: (() => void)[] = [];
  private closing: Promise<void> | undefined;
  private renewer: CredentialsRenewer | undefined;
  /** Set while the gateway refuses new credentials: reports fail with it. */
  private refusal: CredentialsError | undefined;
  /** Retries waiting out a backoff, to be woken when the credentials are refused. */
  private readonly sleepers = new Set<() => void>();
  private onError: (error: Error) => void = warn;
  private readonly link: ConnectionWatch;

  /** Uses a connection the bot owns; `close()` leaves it open. */
  constructor(
    private readonly nc: NatsConnection,
    options: UsageClientOptions,
  ) {
    this.options = resolveOptions(options);
    this.js = jetstream(nc, { timeout: this.options.publishTimeoutMs });
    this.slots = new Slots(this.options.maxPending);
    // Errors of a connection the bot owns are the bot's business; those of one the client opened are told.
    this.link = new ConnectionWatch(nc, (error) => {
      if (this.ownsConnection) this.tell(error);
    });
  }

  /**
   * Opens a connection of its own (reconnecting without limit); `close()` drains it. With `credentials`
   * it first asks the gateway for the bot's NATS credentials (throwing CredentialsError if it cannot),
   * uses their inbox prefix, and renews them in the background; with `credsFile` it reads that file.
   */
  static async connect(servers: string | string[], options: UsageClientConnectOptions): Promise<UsageClient> {
    const { connect: connectOptions = {}, credentials, credsFile, onError, ...clientOptions } = options;
    const { botId } = resolveOptions(clientOptions);
    if (credentials !== undefined && credsFile !== undefined) {
      throw new TypeError('invalid UsageClient options: give credentials or credsFile, not both');
    }
    const given = AUTH_OPTIONS.filter((key) => connectOptions[key] !== undefined);
    if ((credentials !== undefined || credsFile !== undefined) && given.length > 0) {
      throw new TypeError(
        `invalid UsageClient options: connect.${given.join(', connect.')} cannot be given with ${credentials ? 'credentials' : 'credsFile'}`,
      );
    }

    let auth: Partial<NodeConnectionOptions> = {};
    let renewer: CredentialsRenewer | undefined;
    // The renewer exists before the client it tells of renewals (it only starts once the client does).
    const target: { client?: UsageClient } = {};
    if (credentials !== undefined) {
      const source = resolveCredentialsOptions(credentials);
      const first = await fetchNatsCredentials(source, botId);
      const current = new CredentialsRenewer(first, () => fetchNatsCredentials(source, botId), source.renewAfter, {
        renewed: (next) => target.client?.credentialsRenewed(next),
        failed: (error) => target.client?.renewalFailed(error),
      });
      const encoder = new TextEncoder();
      renewer = current;
      auth = {
        authenticator: credsAuthenticator(() => encoder.encode(current.credentials.creds)),
        inboxPrefix: first.inboxPrefix,
        // Expired credentials are refused until the next renewal: keep trying rather than give up.
        ignoreAuthErrorAbort: true,
      };
    } else if (credsFile !== undefined) {
      const read = () => readFileSync(credsFile);
      if (!parseCreds(read().toString('utf8'))) {
        throw new TypeError(`invalid UsageClient options: credsFile ${credsFile} is not a NATS credentials file`);
      }
      auth = {
        authenticator: credsAuthenticator(read),
        inboxPrefix: botInboxPrefix(botId),
        ignoreAuthErrorAbort: true,
      };
    }

    const nc = await connect({
      name: `parley-usage-client:${botId}`,
      maxReconnectAttempts: -1,
      ...auth,
      ...connectOptions,
      servers,
    });
    const client = new UsageClient(nc, clientOptions);
    target.client = client;
    client.ownsConnection = true;
    if (onError) client.onError = onError;
    if (renewer) {
      client.renewer = renewer;
      renewer.start();
      void nc.closed().then(() => renewer.stop());
    }
    return client;
  }

  get botId(): string {
    return this.options.botId;
  }

  /** The NATS connection the client publishes on. */
  get connection(): NatsConnection {
    return this.nc;
  }

  /** The credentials in use when the client got them from the gateway (`credentials` option). */
  get credentials(): CredentialsInfo | undefined {
    const c = this.renewer?.credentials;
    if (!c) return undefined;
    return {
      publicKey: c.publicKey,
      expiresAt: c.expiresAt,
      inboxPrefix: c.inboxPrefix,
      publish: c.publish,
      subscribe: c.subscribe,
    };
  }

  /** The gateway's refusal of new credentials while it lasts (reports fail with it meanwhile). */
  get credentialsError(): CredentialsError | undefined {
    return this.refusal;
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
    const deadline = Date.now() + timeout;
    const request = JSON.stringify({ bot_id: this.options.botId });
    let reply: Msg;
    try {
      // A question cut off by a reconnect is asked again, within the same overall timeout.
      for (;;) {
        await this.untilUp(deadline);
        const left = Math.max(1, deadline - Date.now());
        try {
          reply = await this.link.guard(this.nc.request(subject, request, { timeout: left }));
          break;
        } catch (error) {
          if (!(error instanceof ConnectionInterruptedError) || deadline - Date.now() <= 0) throw error;
        }
      }
    } catch (error) {
      if (error instanceof Error && (error.name === 'TimeoutError' || error instanceof ConnectionInterruptedError)) {
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
      this.renewer?.stop();
      if (this.ownsConnection && !this.nc.isClosed()) {
        // Draining needs the server; a connection that is away (or stays away) is closed instead.
        let timer: NodeJS.Timeout | undefined;
        const drained = this.link.isUp
          ? await Promise.race([
              this.nc.drain().then(
                () => true,
                () => false,
              ),
              new Promise<false>(
                (resolve) => (timer = setTimeout(() => resolve(false), this.options.publishTimeoutMs)),
              ),
            ])
          : false;
        clearTimeout(timer);
        if (!drained && !this.nc.isClosed()) await this.nc.close().catch(() => undefined);
      }
      this.link.stop();
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new UsageClientClosedError();
  }

  /** New credentials: switch the connection to them now rather than be cut off when the old ones expire. */
  private credentialsRenewed(_next: IssuedCredentials): void {
    this.refusal = undefined;
    if (!this.nc.isClosed() && !this.nc.isDraining()) {
      this.nc.reconnect().catch(() => undefined);
    }
  }

  /** A renewal failed: tell, and while the gateway refuses, fail the reports waiting and new ones. */
  private renewalFailed(error: CredentialsError): void {
    if (!error.retryable) {
      this.refusal = error;
      for (const wake of this.sleepers) wake();
    }
    this.tell(error);
  }

  private tell(error: Error): void {
    try {
      this.onError(error);
    } catch {
      // An error handler that throws must not break the client.
    }
  }

  /** Waits until the connection is up, the deadline passes, or the credentials are refused. */
  private async untilUp(deadline: number): Promise<void> {
    if (this.link.isUp) return;
    const left = deadline - Date.now();
    if (left > 0) await this.pause(left, this.link.whenUp());
  }

  /** Waits `ms`, or less if `until` resolves or the credentials are refused meanwhile. */
  private pause(ms: number, until?: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
      void until?.then(done);
    });
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
      if (this.refusal) throw this.refusal;
      await this.untilUp(deadline);
      if (this.refusal) throw this.refusal;
      try {
        const ack = await this.link.guard(
          this.js.publish(subject, payload, { msgID, timeout: this.options.publishTimeoutMs }),
        );
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (error) {
        const left = deadline - Date.now();
        if (left <= 0) throw error;
        // Cut off by a reconnect (e.g. to renewed credentials): send it again as soon as the connection is back.
        if (error instanceof ConnectionInterruptedError) continue;
        if (!isRetryable(error, this.nc.isClosed())) throw error;
        if (this.refusal) throw this.refusal;
        await this.pause(Math.min(backoffMs(attempt), left));
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

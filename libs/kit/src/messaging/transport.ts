import { Catch, Injectable, UseFilters, applyDecorators, type RpcExceptionFilter } from '@nestjs/common';
import {
  BaseRpcContext,
  ClientProxy,
  EventPattern,
  MessagePattern,
  Server,
  type CustomTransportStrategy,
  type MessageHandler,
  type ReadPacket,
  type WritePacket,
} from '@nestjs/microservices';
import { SpanKind, context, trace } from '@opentelemetry/api';
import {
  errors as natsErrors,
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  type Subscription,
} from '@nats-io/transport-node';
import {
  DLQ_DOMAIN,
  DOMAIN_STREAM,
  Headers,
  ParleyError,
  loosen,
  validationError,
  type DomainEventContract,
  type RpcContract,
  type RpcRequest,
  type RpcResponse,
} from '@parley/contracts';
import { isObservable, lastValueFrom, throwError, type Observable } from 'rxjs';
import type { z } from 'zod';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { BatchConsumer, type BatchConsumerSpec, type BatchItem, type BatchVerdict } from './batch-consumer';
import { DurableConsumer, type DeliveryMeta } from './consumer';
import { DOMAIN_STREAM_SPEC, ensureStream } from './jetstream';
import { isInfrastructureError, isStatementTimeout, unreachable } from './failures';
import type { Nats } from './nats';
import { contextFromHeaders, recordError, traceHeaders } from './trace';
import { decodeJson, encodeJson, encodeReply, replyPayload, respond, safeHeaders } from './wire';

const tracer = trace.getTracer('@parley/kit/transport');

// ---- Declaring handlers ---------------------------------------------------------------

/** Hands a handler's error to the transport as it was thrown (Nest's default hides it behind "Internal server error"). */
@Catch()
export class PassErrorsThrough implements RpcExceptionFilter {
  catch(exception: unknown): Observable<never> {
    return throwError(() => exception);
  }
}

/** How an `@EventPattern` handler is fed from JetStream. */
export type ConsumerDeclaration =
  | { kind: 'event'; stream: string; durable: string; deadLetterSubject: string; schema: z.ZodType }
  | ({ kind: 'batch' } & Omit<BatchConsumerSpec<z.ZodType>, 'filterSubject'>);

interface HandlerExtras {
  contract?: RpcContract;
  consumer?: ConsumerDeclaration;
}

/** A request/reply handler of a contract: `@MessagePattern(contract.subject)` carrying the contract's schemas. */
export const RpcHandler = (contract: RpcContract): MethodDecorator =>
  applyDecorators(
    MessagePattern(contract.subject, { contract } satisfies HandlerExtras),
    UseFilters(PassErrorsThrough),
  );

/**
 * A handler of a domain event, fed by a durable consumer (stream `DOMAIN`, dead letters on
 * `dlq.domain`) shared by every instance of the service. It receives the parsed event and a
 * `NatsContext`; the message is acked after it returns and redelivered with backoff if it throws.
 */
export const DomainEventHandler = (event: DomainEventContract, options: { durable: string }): MethodDecorator =>
  applyDecorators(
    EventPattern<string>(event.subject, {
      consumer: {
        kind: 'event',
        stream: DOMAIN_STREAM,
        durable: options.durable,
        deadLetterSubject: DLQ_DOMAIN,
        schema: loosen(event.schema),
      },
    } satisfies HandlerExtras),
    UseFilters(PassErrorsThrough),
  );

/**
 * A handler of a JetStream subject that takes events in batches (`BatchItem[]`) and answers
 * one verdict per event. Run-time tuning (batch size, concurrency) comes from the transport's
 * options under the consumer's durable name.
 */
export const StreamBatchHandler = <S extends z.ZodType>(
  subject: string,
  spec: Omit<BatchConsumerSpec<S>, 'filterSubject'>,
): MethodDecorator =>
  applyDecorators(
    EventPattern<string>(subject, {
      // Stored untyped: the consumer hands `key` and `check` only what `schema` produced.
      consumer: { kind: 'batch', ...(spec as unknown as Omit<BatchConsumerSpec<z.ZodType>, 'filterSubject'>) },
    } satisfies HandlerExtras),
    UseFilters(PassErrorsThrough),
  );

/** What a handler learns about the message beside its payload. */
export class NatsContext extends BaseRpcContext<[subject: string, meta: DeliveryMeta | undefined]> {
  /** The subject without the deployment's prefix. */
  get subject(): string {
    return this.args[0];
  }
  /** JetStream delivery facts (undefined for request/reply). */
  get delivery(): DeliveryMeta | undefined {
    return this.args[1];
  }
}

// ---- Serving ----------------------------------------------------------------------------

export interface TransportOptions {
  /** The queue group: the service's name, so its instances share the requests. */
  queue: string;
  /** Run-time tuning of batch consumers, by durable name. */
  consumers?: Record<string, Partial<Pick<BatchConsumerSpec<z.ZodType>, 'maxBatch' | 'concurrency' | 'maxAckPending'>>>;
}

/**
 * Parley's NATS transport for `@nestjs/microservices`: request/reply on core NATS with plain
 * JSON both ways, errors as a `Parley-Error` header, W3C trace context, one queue group per
 * service, zod at both ends and the deployment's subject prefix; JetStream durable consumers
 * for `@EventPattern` handlers, acked only after the handler succeeded. Whatever bytes arrive,
 * a subscription survives them.
 */
export class ParleyTransport extends Server implements CustomTransportStrategy {
  override readonly propagatesEventHandlerErrors = true;
  private readonly subscriptions: Subscription[] = [];
  private readonly consumers: { stop(): Promise<void> }[] = [];
  private closed = false;

  constructor(
    private readonly nats: Nats,
    private readonly options: TransportOptions,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    super();
  }

  on(): void {
    // Connection events are logged by `Nats`; nothing registers listeners here.
  }

  unwrap<T>(): T {
    return this.nats.connection as T;
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      const subjects: string[] = [];
      const durables: string[] = [];
      for (const [pattern, handler] of this.messageHandlers) {
        if (handler.isEventHandler) {
          durables.push(await this.consume(pattern, handler));
        } else {
          this.serve(pattern, handler);
          subjects.push(pattern);
        }
      }
      await this.nats.connection.flush();
      if (subjects.length > 0 || durables.length > 0) {
        this.log.info({ subjects, consumers: durables, queue: this.options.queue }, 'serving NATS');
      }
      callback();
    } catch (error) {
      callback(error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sub of this.subscriptions) await sub.drain().catch(() => sub.unsubscribe());
    this.subscriptions.length = 0;
    await Promise.all(this.consumers.map((c) => c.stop()));
    this.consumers.length = 0;
  }

  private serve(subject: string, handler: MessageHandler): void {
    const contract = (handler.extras as HandlerExtras | undefined)?.contract;
    if (!contract) throw new Error(`${subject}: a request handler is declared with @RpcHandler(contract)`);
    const sub = this.nats.connection.subscribe(this.nats.subject(subject), {
      queue: this.options.queue,
      callback: (err, msg) => {
        if (err) {
          this.log.error({ err, subject }, 'subscription failed');
          return;
        }
        this.handleRpc(contract, handler, msg).catch((error: unknown) => this.unexpected(error, subject));
      },
    });
    this.subscriptions.push(sub);
  }

  private async handleRpc(contract: RpcContract, handler: MessageHandler, msg: Msg): Promise<void> {
    const subject = contract.subject;
    if (!msg.reply) {
      // A request nobody waits for is not a request: nothing runs for it.
      this.metrics.natsRequests.inc({ subject, outcome: 'NO_REPLY_SUBJECT' });
      return;
    }
    const started = process.hrtime.bigint();
    const { headers, malformed } = safeHeaders(msg);
    const attributes = { 'messaging.system': 'nats', 'messaging.destination.name': subject };
    await tracer.startActiveSpan(
      `${subject} process`,
      { kind: SpanKind.SERVER, attributes },
      contextFromHeaders(headers),
      async (span) => {
        let outcome = 'ok';
        try {
          if (malformed) throw new ParleyError('BAD_REQUEST', 'malformed NATS headers');
          const request = parseRequest(contract, decodeJson(msg.data));
          if (!request.success) throw validationError(request.error);
          const result = await this.invoke(handler, request.data, new NatsContext([subject, undefined]));
          respond(this.nats, msg, encodeReply(result));
        } catch (error) {
          const problem = toParleyError(error);
          outcome = problem.code;
          if (problem.code === 'UPSTREAM_UNAVAILABLE' && !(error instanceof ParleyError)) {
            // A dependency away is an outage to note, not a fault in this request: no stack.
            this.log.warn(
              { subject, detail: problem.detail, err: error instanceof Error ? error.message : String(error) },
              'request refused: a dependency is out of reach',
            );
            recordError(span, error);
          } else if (problem.status >= 500) {
            this.log.error({ err: error, subject }, 'request handler failed');
            recordError(span, error);
          }
          const h = natsHeaders();
          h.set(Headers.error, problem.code);
          try {
            msg.respond(encodeJson(problem.toPayload()), { headers: h });
          } catch (replyError) {
            this.unexpected(replyError, subject);
          }
        } finally {
          span.end();
          this.metrics.natsRequests.inc({ subject, outcome });
          this.metrics.natsDuration.observe({ subject }, Number(process.hrtime.bigint() - started) / 1e9);
        }
      },
    );
  }

  private async consume(subject: string, handler: MessageHandler): Promise<string> {
    const declared = (handler.extras as HandlerExtras | undefined)?.consumer;
    if (!declared)
      throw new Error(`${subject}: an event handler is declared with @DomainEventHandler or @StreamBatchHandler`);
    if (declared.stream === DOMAIN_STREAM) await ensureStream(this.nats, DOMAIN_STREAM_SPEC);
    if (declared.kind === 'event') {
      const consumer = new DurableConsumer(
        this.nats,
        { ...declared, filterSubject: subject },
        async (event: unknown, meta: DeliveryMeta) => {
          await this.invoke(handler, event, new NatsContext([meta.subject, meta]));
        },
        this.log,
        this.metrics,
      );
      await consumer.start();
      this.consumers.push(consumer);
      return declared.durable;
    }
    const { kind: _kind, ...spec } = declared;
    const consumer = new BatchConsumer(
      this.nats,
      { ...spec, ...this.options.consumers?.[spec.durable], filterSubject: subject },
      (items: BatchItem<unknown>[]) =>
        this.invoke(handler, items, new NatsContext([subject, undefined])) as Promise<BatchVerdict[]>,
      this.log,
      this.metrics,
    );
    await consumer.start();
    this.consumers.push(consumer);
    return spec.durable;
  }

  /** Runs a Nest handler (guards, pipes, interceptors) and waits for its result or its error. */
  private async invoke(handler: MessageHandler, data: unknown, ctx: NatsContext): Promise<unknown> {
    const result: unknown = await handler(data, ctx);
    // A handler's promise has already settled; only an observable needs waiting for.
    if (!isObservable(result)) return result;
    return lastValueFrom(this.transformToObservable(result), { defaultValue: undefined });
  }

  private unexpected(error: unknown, subject: string): void {
    this.metrics.unexpectedErrors.inc({ kind: 'nats_handler' });
    this.log.error({ err: error, subject }, 'unexpected error while handling a message');
  }
}

// ---- Calling ----------------------------------------------------------------------------

interface CallPattern {
  subject: string;
  timeoutMs: number;
  headers: MsgHdrs;
}

/**
 * The client side of the transport (`ClientProxy`): `call(contract, request)` sends plain
 * JSON on the contract's subject with trace context and a timeout, gathers a chunked reply,
 * turns an error reply into the `ParleyError` it was, and checks the answer against the contract.
 */
@Injectable()
export class RpcClient extends ClientProxy {
  constructor(
    private readonly nats: Nats,
    private readonly defaultTimeoutMs: number,
    private readonly metrics: Metrics,
  ) {
    super();
  }

  connect(): Promise<unknown> {
    return Promise.resolve(this.nats.connection);
  }

  close(): void {
    // The connection belongs to `Nats`, closed with the application.
  }

  unwrap<T>(): T {
    return this.nats.connection as T;
  }

  async call<C extends RpcContract>(
    contract: C,
    request: RpcRequest<C>,
    options: { timeoutMs?: number } = {},
  ): Promise<RpcResponse<C>> {
    return this.traced(contract, request, options, async (payload) => {
      const parsed = contract.response.safeParse(parseAnswer(contract.subject, payload));
      if (!parsed.success) {
        throw new ParleyError('INTERNAL', `${contract.subject} answered out of contract`, { cause: parsed.error });
      }
      return parsed.data as RpcResponse<C>;
    });
  }

  /**
   * The answer as the service encoded it (JSON bytes), for a caller that forwards it unchanged
   * (the gateway's largest read routes): not parsed, checked and encoded again on the way
   * through. An error answer still throws its ParleyError.
   */
  async callRaw<C extends RpcContract>(
    contract: C,
    request: RpcRequest<C>,
    options: { timeoutMs?: number } = {},
  ): Promise<Uint8Array> {
    return this.traced(contract, request, options, async (payload) => payload);
  }

  private traced<C extends RpcContract, T>(
    contract: C,
    request: RpcRequest<C>,
    options: { timeoutMs?: number },
    answer: (payload: Uint8Array) => Promise<T>,
  ): Promise<T> {
    const attributes = { 'messaging.system': 'nats', 'messaging.destination.name': contract.subject };
    return tracer.startActiveSpan(
      `${contract.subject} request`,
      { kind: SpanKind.CLIENT, attributes },
      async (span) => {
        let outcome = 'ok';
        try {
          const pattern: CallPattern = {
            subject: contract.subject,
            timeoutMs: options.timeoutMs ?? this.defaultTimeoutMs,
            headers: traceHeaders(undefined, trace.setSpan(context.active(), span)),
          };
          // Straight to the request: `send` (for Nest's ClientProxy users) wraps the same call in
          // observables, which cost measurable CPU on every request.
          return await answer(await this.requestPayload(pattern, request ?? {}));
        } catch (error) {
          outcome = error instanceof ParleyError ? error.code : 'INTERNAL';
          if (!(error instanceof ParleyError) || error.status >= 500) recordError(span, error);
          throw error;
        } finally {
          this.metrics.natsClientRequests.inc({ subject: contract.subject, outcome });
          span.end();
        }
      },
    );
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const pattern = packet.pattern as CallPattern;
    this.request(pattern, packet.data).then(
      (response) => callback({ response, isDisposed: true }),
      (err: unknown) => callback({ err, isDisposed: true }),
    );
    return () => undefined;
  }

  protected dispatchEvent<T = unknown>(packet: ReadPacket): Promise<T> {
    const pattern = packet.pattern as CallPattern | string;
    const subject = typeof pattern === 'string' ? pattern : pattern.subject;
    this.nats.connection.publish(this.nats.subject(subject), encodeJson(packet.data), {
      headers: traceHeaders(),
    });
    return Promise.resolve(undefined as T);
  }

  private async request(pattern: CallPattern, body: unknown): Promise<unknown> {
    return parseAnswer(pattern.subject, await this.requestPayload(pattern, body));
  }

  /**
   * The answer's bytes (gathered when chunked); an error answer throws its ParleyError. While
   * NATS is away the call is refused at once, and a call in flight when the connection drops
   * is rejected then (503 UPSTREAM_UNAVAILABLE, retryable), not left to its timeout.
   */
  private async requestPayload(pattern: CallPattern, body: unknown): Promise<Uint8Array> {
    const { subject, timeoutMs } = pattern;
    const nc = this.nats.connection;
    let reply: Msg;
    let payload: Uint8Array;
    try {
      [reply, payload] = await this.nats.whileConnected(async () => {
        const answer = await nc.request(this.nats.subject(subject), encodeJson(body), {
          timeout: timeoutMs,
          headers: pattern.headers,
        });
        return [answer, await replyPayload(nc, answer, timeoutMs)] as const;
      });
    } catch (error) {
      throw requestFailure(subject, timeoutMs, error);
    }
    if (safeHeaders(reply).headers?.has(Headers.error)) {
      throw ParleyError.fromPayload(parseAnswer(subject, payload) as never);
    }
    return payload;
  }
}

/** Parses a request; JSON nested too deeply for the schema to walk is refused, not a crash. */
function parseRequest(contract: RpcContract, value: unknown) {
  try {
    return contract.request.safeParse(value);
  } catch (error) {
    if (error instanceof RangeError)
      throw new ParleyError('BAD_REQUEST', 'payload nested too deeply', { cause: error });
    throw error;
  }
}

function parseAnswer(subject: string, payload: Uint8Array): unknown {
  try {
    return decodeJson(payload);
  } catch (error) {
    throw new ParleyError('INTERNAL', `${subject} answered something that is not JSON`, { cause: error });
  }
}

function requestFailure(subject: string, timeoutMs: number, error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  if (error instanceof natsErrors.TimeoutError) {
    return new ParleyError('UPSTREAM_TIMEOUT', `no answer on ${subject} within ${timeoutMs} ms`, { cause: error });
  }
  if (error instanceof natsErrors.RequestError && error.isNoResponders()) {
    return new ParleyError('UPSTREAM_UNAVAILABLE', `no service answers ${subject}`, { cause: error });
  }
  return new ParleyError('UPSTREAM_UNAVAILABLE', `request on ${subject} failed`, { cause: error });
}

/** Whether a call failed because no instance of the service was there to answer at all. */
export function isNoResponders(error: unknown): boolean {
  const cause = error instanceof ParleyError ? error.cause : error;
  return cause instanceof natsErrors.RequestError && cause.isNoResponders();
}

/**
 * The error a handler's failure travels as. A dependency out of reach (PostgreSQL refusing
 * connections, starting up, a connection cut mid-query) is 503 UPSTREAM_UNAVAILABLE,
 * retryable: the request was sound and will succeed once it is back (decisions/0004, 0027).
 */
export function toParleyError(error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  if (isStatementTimeout(error)) {
    return new ParleyError('QUERY_TIMEOUT', 'the database did not answer in time; try again, or ask for less', {
      retryable: true,
      cause: error,
    });
  }
  if (isInfrastructureError(error)) {
    return new ParleyError('UPSTREAM_UNAVAILABLE', `${unreachable(error)} is out of reach; try again`, {
      retryable: true,
      cause: error,
    });
  }
  return new ParleyError('INTERNAL', 'internal error', { cause: error });
}

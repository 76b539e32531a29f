import { Injectable, SetMetadata } from '@nestjs/common';
import { SpanKind, SpanStatusCode, context, trace, type Span } from '@opentelemetry/api';
import { errors as natsErrors, headers as natsHeaders, type Msg, type Subscription } from '@nats-io/transport-node';
import { ParleyError, validationError, type RpcContract, type RpcRequest, type RpcResponse } from '@parley/contracts';
import type { z } from 'zod';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import type { Nats } from './nats';
import { contextFromHeaders, traceHeaders } from './trace';

/** The header that marks a reply as an error payload rather than a result. */
export const ERROR_HEADER = 'Parley-Error';

const tracer = trace.getTracer('@parley/kit/rpc');

export const RPC_HANDLER = Symbol('parley:rpc-handler');

/** Marks a provider method as the handler of a request/reply contract. */
export const RpcHandler = (contract: RpcContract) => SetMetadata(RPC_HANDLER, contract);

export type RpcHandlerFn<C extends RpcContract> = (request: z.output<C['request']>) => Promise<z.input<C['response']>>;

/** Serves request/reply contracts on NATS: one queue group per service, so instances share the load. */
export class RpcServer {
  private readonly subscriptions: Subscription[] = [];

  constructor(
    private readonly nats: Nats,
    private readonly queue: string,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
  ) {}

  serve<C extends RpcContract>(contract: C, handler: RpcHandlerFn<C>): void {
    const subject = this.nats.subject(contract.subject);
    const sub = this.nats.connection.subscribe(subject, {
      queue: this.queue,
      callback: (err, msg) => {
        if (err) {
          this.logger.error({ err, subject }, 'rpc subscription failed');
          return;
        }
        void this.handle(contract, handler, msg);
      },
    });
    this.subscriptions.push(sub);
  }

  private async handle<C extends RpcContract>(contract: C, handler: RpcHandlerFn<C>, msg: Msg): Promise<void> {
    const started = process.hrtime.bigint();
    const parent = contextFromHeaders(msg.headers);
    await tracer.startActiveSpan(
      `${contract.subject} process`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'messaging.system': 'nats', 'messaging.destination.name': contract.subject },
      },
      parent,
      async (span) => {
        let outcome = 'ok';
        try {
          const request = contract.request.safeParse(decodeJson(msg));
          if (!request.success) throw validationError(request.error);
          const result = await handler(request.data as z.output<C['request']>);
          msg.respond(JSON.stringify(result ?? null));
        } catch (error) {
          const problem = toParleyError(error);
          outcome = problem.code;
          if (problem.status >= 500) {
            this.logger.error({ err: error, subject: contract.subject }, 'rpc handler failed');
            recordError(span, error);
          }
          const h = natsHeaders();
          h.set(ERROR_HEADER, problem.code);
          msg.respond(JSON.stringify(problem.toPayload()), { headers: h });
        } finally {
          span.end();
          this.metrics.natsRequests.inc({ subject: contract.subject, outcome });
          this.metrics.natsDuration.observe(
            { subject: contract.subject },
            Number(process.hrtime.bigint() - started) / 1e9,
          );
        }
      },
    );
  }

  async close(): Promise<void> {
    for (const sub of this.subscriptions) {
      await sub.drain().catch(() => sub.unsubscribe());
    }
    this.subscriptions.length = 0;
  }
}

/** Calls request/reply contracts with a timeout; a reply marked as error becomes a ParleyError. */
@Injectable()
export class RpcClient {
  constructor(
    private readonly nats: Nats,
    private readonly defaultTimeoutMs: number,
    private readonly metrics: Metrics,
  ) {}

  async call<C extends RpcContract>(
    contract: C,
    request: RpcRequest<C>,
    options: { timeoutMs?: number } = {},
  ): Promise<RpcResponse<C>> {
    return tracer.startActiveSpan(
      `${contract.subject} request`,
      {
        kind: SpanKind.CLIENT,
        attributes: { 'messaging.system': 'nats', 'messaging.destination.name': contract.subject },
      },
      async (span) => {
        let outcome = 'ok';
        try {
          const reply = await this.request(contract.subject, request, options.timeoutMs ?? this.defaultTimeoutMs, span);
          if (reply.headers?.has(ERROR_HEADER)) {
            const error = ParleyError.fromPayload(reply.json());
            outcome = error.code;
            throw error;
          }
          const parsed = contract.response.safeParse(reply.json());
          if (!parsed.success) {
            throw new ParleyError('INTERNAL', `${contract.subject} answered out of contract`, { cause: parsed.error });
          }
          return parsed.data as RpcResponse<C>;
        } catch (error) {
          if (outcome === 'ok') outcome = error instanceof ParleyError ? error.code : 'INTERNAL';
          if (!(error instanceof ParleyError) || error.status >= 500) recordError(span, error);
          throw error;
        } finally {
          this.metrics.natsClientRequests.inc({ subject: contract.subject, outcome });
          span.end();
        }
      },
    );
  }

  private async request(subject: string, body: unknown, timeout: number, span: Span): Promise<Msg> {
    try {
      return await this.nats.connection.request(this.nats.subject(subject), JSON.stringify(body), {
        timeout,
        headers: traceHeaders(undefined, trace.setSpan(context.active(), span)),
      });
    } catch (error) {
      if (error instanceof natsErrors.TimeoutError) {
        throw new ParleyError('UPSTREAM_TIMEOUT', `no answer on ${subject} within ${timeout} ms`, { cause: error });
      }
      if (error instanceof natsErrors.RequestError && error.isNoResponders()) {
        throw new ParleyError('UPSTREAM_UNAVAILABLE', `no service answers ${subject}`, { cause: error });
      }
      throw new ParleyError('UPSTREAM_UNAVAILABLE', `request on ${subject} failed`, { cause: error });
    }
  }
}

function decodeJson(msg: Msg): unknown {
  try {
    return msg.data.length === 0 ? {} : msg.json();
  } catch {
    throw new ParleyError('BAD_REQUEST', 'payload is not JSON');
  }
}

export function toParleyError(error: unknown): ParleyError {
  if (error instanceof ParleyError) return error;
  return new ParleyError('INTERNAL', 'internal error', { cause: error });
}

export function recordError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : new Error(String(error)));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

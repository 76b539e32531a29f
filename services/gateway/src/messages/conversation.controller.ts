import { Controller, Get, Headers, Inject, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { z } from 'zod';
import {
  IdParamSchema,
  INT32_MAX,
  MessageRpc,
  LiveMessageSchema,
  MessageSchema,
  SessionRpc,
  liveSessionSubject,
  queryInt,
  text,
  type LiveMessage,
  type Message,
  type Principal,
} from '@parley/contracts';
import { LOGGER, Metrics, Nats, RpcClient, subscribeLive, type Logger } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { StreamLeases } from './stream-leases';
import { StreamWatch } from './stream-watch';

const ExportQuerySchema = z.object({ format: z.enum(['json', 'markdown']).default('json') });
const StreamQuerySchema = z.object({
  last_event_id: queryInt({ min: 0, max: INT32_MAX }).optional(),
  access_token: text({ max: 4096 }).optional(),
});
const PAGE = 500;
const KEEPALIVE_MS = 15_000;

/**
 * Every message of a session after `afterSeq`, page by page until the message service says no
 * more follow: a page holds up to PAGE messages or MESSAGE_PAGE_BYTES, so memory stays bounded
 * whatever the session's size and however large its messages.
 */
async function* messagesAfter(
  rpc: RpcClient,
  actor: Principal,
  sessionId: string,
  afterSeq = 0,
): AsyncGenerator<Message> {
  let seq = afterSeq;
  for (;;) {
    const { items, more } = await rpc.call(MessageRpc.after, {
      actor,
      session_id: sessionId,
      after_seq: seq,
      limit: PAGE,
    });
    for (const m of items) yield m;
    const last = items.at(-1);
    if (!last || !(more ?? items.length === PAGE)) return;
    seq = last.seq;
  }
}

function markdownOf(message: Message): string {
  return `### ${message.seq}. ${message.role} — ${message.created_at}\n\n${message.content}\n\n`;
}

@Controller('api/v1/sessions')
export class ConversationController {
  constructor(
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(Nats) private readonly nats: Nats,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(Metrics) private readonly metrics: Metrics,
    @Inject(StreamLeases) private readonly leases: StreamLeases,
    @Inject(StreamWatch) private readonly watcher: StreamWatch,
  ) {}

  @Get(':id/export')
  @ApiRoute({
    summary:
      'The whole conversation as JSON or Markdown, streamed: the gateway reads it from the message service page by page, however large its messages',
    tags: ['sessions'],
    params: IdParamSchema,
    query: ExportQuerySchema,
    status: 200,
    response: z.object({ session: z.record(z.string(), z.unknown()), messages: z.array(MessageSchema) }),
    errors: ['NOT_FOUND', 'TOO_MANY_EXPORTS'],
  })
  async export(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() { format }: Valid<typeof ExportQuerySchema>,
    @Res() reply: FastifyReply,
  ) {
    const session = await this.rpc.call(SessionRpc.get, { actor, id });
    const rpc = this.rpc;
    async function* body(): AsyncGenerator<string> {
      if (format === 'markdown') {
        yield `# ${session.title ?? 'Conversation'}\n\n- session: ${session.id}\n- created: ${session.created_at}\n\n`;
        for await (const m of messagesAfter(rpc, actor, id)) yield markdownOf(m);
        return;
      }
      yield `{"session":${JSON.stringify(session)},"messages":[`;
      let first = true;
      for await (const m of messagesAfter(rpc, actor, id)) {
        yield `${first ? '' : ','}${JSON.stringify(m)}`;
        first = false;
      }
      yield ']}';
    }
    const filename = `session-${id}.${format === 'json' ? 'json' : 'md'}`;
    // At most MAX_EXPORTS_PER_PRINCIPAL at once: the place is held until the body is sent or the caller leaves.
    const lease = await this.leases.acquire('export', actor);
    reply.raw.once('close', () => void lease.release());
    try {
      await reply
        .header('content-type', format === 'json' ? 'application/json; charset=utf-8' : 'text/markdown; charset=utf-8')
        .header('content-disposition', `attachment; filename="${filename}"`)
        .send(Readable.from(body()));
    } catch (error) {
      await lease.release();
      throw error;
    }
  }

  @Get(':id/stream')
  @ApiRoute({
    summary:
      'Server-sent events: each appended message as `id: <seq>`, `event: message`; resume with Last-Event-ID (or last_event_id): the messages after it are replayed page by page until caught up, then live ones follow; browsers may pass access_token',
    tags: ['sessions'],
    params: IdParamSchema,
    query: StreamQuerySchema,
    status: 200,
    response: null,
    errors: ['NOT_FOUND', 'TOO_MANY_STREAMS'],
    queryToken: true,
  })
  async stream(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() query: Valid<typeof StreamQuerySchema>,
    @Headers('last-event-id') lastEventHeader: string | undefined,
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
  ) {
    const headerSeq =
      lastEventHeader !== undefined && /^\d+$/.test(lastEventHeader) ? Number(lastEventHeader) : undefined;
    let lastSent = headerSeq ?? query.last_event_id ?? 0;
    await this.rpc.call(SessionRpc.get, { actor, id });
    // At most MAX_STREAMS_PER_PRINCIPAL open at once (429 beyond), across gateway instances.
    const lease = await this.leases.acquire('stream', actor);

    // Subscribe first, then replay what was missed: nothing falls between the two.
    const buffered: LiveMessage[] = [];
    let replaying = true;
    const live = subscribeLive(this.nats, liveSessionSubject(id), LiveMessageSchema, this.metrics, (m) => {
      if (replaying) buffered.push(m);
      else deliver(m);
    });
    const raw = reply.raw;
    reply.hijack();
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    raw.write(': connected\n\n');
    const send = (m: Message) => {
      if (m.seq <= lastSent) return;
      lastSent = m.seq;
      raw.write(`id: ${m.seq}\nevent: message\ndata: ${JSON.stringify(m)}\n\n`);
    };
    // A notice of a message too large for live fan-out, or a gap (a live message missed), is
    // filled from the message service, one catch-up at a time.
    const replay = async () => {
      for await (const m of messagesAfter(this.rpc, actor, id, lastSent)) {
        if (closed) return;
        send(m);
      }
    };
    let catching = Promise.resolve();
    const catchUp = () => {
      catching = catching.then(async () => {
        try {
          await replay();
        } catch (error) {
          this.logger.warn(
            { err: error instanceof Error ? error.message : String(error), session: id },
            'catch-up failed',
          );
        }
      });
    };
    const deliver = (m: LiveMessage) => {
      if (m.seq <= lastSent) return;
      if ('oversized' in m || m.seq > lastSent + 1) catchUp();
      else send(m);
    };
    const keepalive = setInterval(() => raw.write(': keepalive\n\n'), KEEPALIVE_MS);
    let closed = false;
    let stopWatching = () => undefined as void;
    const close = () => {
      if (closed) return;
      closed = true;
      clearInterval(keepalive);
      live.unsubscribe();
      stopWatching();
      void lease.release();
    };
    // The stream ends once its caller may no longer read the session (checked every STREAM_RECHECK_SECONDS).
    if (request.credential) {
      stopWatching = this.watcher.watch(request.credential, id, (why) => {
        raw.write(`event: closed\ndata: ${JSON.stringify({ code: why.code, detail: why.detail })}\n\n`);
        close();
        raw.end();
      });
    }
    request.raw.on('close', close);
    raw.on('close', close);
    if (raw.destroyed) close();
    try {
      if (lastSent > 0 || headerSeq !== undefined || query.last_event_id !== undefined) await replay();
    } catch (error) {
      this.logger.warn(
        { err: error instanceof Error ? error.message : String(error), session: id },
        'stream replay failed',
      );
      raw.end();
      return;
    }
    replaying = false;
    for (const m of buffered.sort((a, b) => a.seq - b.seq)) deliver(m);
  }
}

import { Controller, Get, Inject, Patch, Post, Put, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import {
  AccessControlRpc,
  BatchBodySchema,
  CursorSchema,
  FeedbackBodySchema,
  IdParamSchema,
  MESSAGE_PAGE_BYTES,
  MessageListQuerySchema,
  MessagePageSchema,
  MessageRpc,
  MessageSchema,
  NewMessageSchema,
  PageQuerySchema,
  ParleyError,
  ReadScopeRpc,
  SearchHitSchema,
  SearchQuerySchema,
  SensitiveBodySchema,
  SessionRpc,
  cursorPageSchema,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidBody, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { paged } from '../http/paging';

const SearchPageSchema = z.object({
  limit: z.coerce.number().int('must be an integer').min(1).max(200).default(50),
  cursor: CursorSchema.optional(),
});

const PAGE_KIB = MESSAGE_PAGE_BYTES / 1024;

@Controller('api/v1')
export class MessagesController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post('sessions/:id/messages')
  @ApiRoute({
    summary:
      'Append a message. A client_message_id already used in this session returns that first message with 200, whatever the new body says',
    tags: ['messages'],
    params: IdParamSchema,
    body: NewMessageSchema,
    status: 201,
    response: MessageSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN', 'CONFLICT'],
  })
  async append(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    // The schema holds the size limits too: content, metadata or media too large is a 413 naming it.
    @ValidBody() message: Valid<typeof NewMessageSchema>,
    @Res() reply: FastifyReply,
  ) {
    const answer = await this.rpc.call(MessageRpc.append, { actor, session_id: id, message });
    await reply.status(answer.created ? 201 : 200).send(answer.message);
  }

  @Post('sessions/:id/messages/batch')
  @ApiRoute({
    summary:
      'Append up to 500 messages (768 KiB together, as the JSON of the messages) in order, all or none; 413 naming the field over a limit',
    tags: ['messages'],
    params: IdParamSchema,
    body: BatchBodySchema,
    status: 201,
    response: z.object({ items: z.array(MessageSchema) }),
    errors: ['NOT_FOUND', 'FORBIDDEN', 'CONFLICT'],
  })
  appendBatch(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() { messages }: Valid<typeof BatchBodySchema>,
  ) {
    return this.rpc.call(MessageRpc.appendBatch, { actor, session_id: id, messages });
  }

  @Get('sessions/:id/messages')
  @ApiRoute({
    summary: `List a session's messages by seq (order=asc|desc), with a cursor or page/size. A page holds up to limit messages while they fit in ${PAGE_KIB} KiB, and always one; only a null next_cursor means the end. A page/size page cut short by size holds its first messages and adds next_cursor, to read the rest of that page with cursor and limit`,
    tags: ['messages'],
    params: IdParamSchema,
    query: [MessageListQuerySchema, PageQuerySchema],
    status: 200,
    response: MessagePageSchema,
    errors: ['NOT_FOUND', 'INVALID_CURSOR'],
  })
  async list(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() query: Valid<[typeof MessageListQuerySchema, typeof PageQuerySchema]>,
    @Res() reply: FastifyReply,
  ) {
    // The page goes out as the message service encoded it (see RpcClient.callRaw).
    const page = await this.rpc.callRaw(MessageRpc.list, { actor, session_id: id, ...paged(query) });
    await reply
      .status(200)
      .type('application/json; charset=utf-8')
      .send(Buffer.from(page.buffer, page.byteOffset, page.byteLength));
  }

  @Get('sessions/:id/messages/latest')
  @ApiRoute({
    summary: 'The newest message of a session (404 if none)',
    tags: ['messages'],
    params: IdParamSchema,
    status: 200,
    response: MessageSchema,
    errors: ['NOT_FOUND'],
  })
  latest(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    return this.rpc.call(MessageRpc.latest, { actor, session_id: id });
  }

  @Put('messages/:id/feedback')
  @ApiRoute({
    summary: "Like, dislike or revoke (null), and mark copied; the session's counters follow",
    tags: ['messages'],
    params: IdParamSchema,
    body: FeedbackBodySchema,
    status: 200,
    response: MessageSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  feedback(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() body: Valid<typeof FeedbackBodySchema>,
  ) {
    return this.rpc.call(MessageRpc.feedback, { actor, id, body });
  }

  @Patch('messages/:id')
  @ApiRoute({
    summary: "Set a message's sensitive_status (admin); the session's rolled-up status follows",
    tags: ['messages'],
    params: IdParamSchema,
    body: SensitiveBodySchema,
    status: 200,
    response: MessageSchema,
    errors: ['NOT_FOUND'],
    admin: true,
  })
  setSensitive(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() { sensitive_status }: Valid<typeof SensitiveBodySchema>,
  ) {
    return this.rpc.call(MessageRpc.setSensitive, { actor, id, sensitive_status });
  }

  @Get('messages/search')
  @ApiRoute({
    summary: `Messages matching q in sessions the caller may read, best match first: English words by full-text search, any substring (Chinese) by trigrams. A page holds up to limit messages while they fit in ${PAGE_KIB} KiB, and always one`,
    tags: ['messages'],
    query: [SearchQuerySchema, SearchPageSchema],
    status: 200,
    response: cursorPageSchema(SearchHitSchema),
    errors: ['NOT_FOUND', 'FORBIDDEN', 'INVALID_CURSOR'],
  })
  async search(
    @Caller() actor: Principal,
    @ValidQuery() query: Valid<[typeof SearchQuerySchema, typeof SearchPageSchema]>,
  ) {
    if (query.session_id) await this.rpc.call(SessionRpc.get, { actor, id: query.session_id });
    if (query.bot_id) {
      const bot = await this.rpc.call(AccessControlRpc.check, {
        subject: actor,
        action: 'read',
        resource: { type: 'bot', id: query.bot_id },
      });
      if (!bot.allowed) throw new ParleyError('FORBIDDEN', `you may not read the messages of bot ${query.bot_id}`);
    }
    const scope = await this.rpc.call(ReadScopeRpc, { subject: actor });
    return this.rpc.call(MessageRpc.search, { actor, ...query, scope });
  }
}

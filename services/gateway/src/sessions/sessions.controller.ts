import { Controller, Delete, Get, HttpCode, Inject, Patch, Post } from '@nestjs/common';
import {
  CreateSessionBodySchema,
  IdParamSchema,
  PageQuerySchema,
  pageSchema,
  SessionFiltersSchema,
  MESSAGE_PAGE_BYTES,
  MessageRpc,
  MessageSchema,
  SessionRpc,
  SessionSchema,
  UsageRpc,
  UsageTotalsSchema,
  UpdateSessionBodySchema,
  text,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { z } from 'zod';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidBody, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { paged } from '../http/paging';

const IncludeQuerySchema = z.object({
  include: text({ max: 100 })
    .optional()
    .transform((v) => new Set((v ?? '').split(',').filter(Boolean)))
    .refine(
      (set) => [...set].every((x) => x === 'messages' || x === 'usage'),
      'a comma-separated list of messages, usage',
    ),
});
/** include=messages asks for the newest messages up to this many, as many as fit in a page. */
const INCLUDED_MESSAGES = 50;

const SessionWithIncludesSchema = SessionSchema.extend({
  messages: z
    .array(MessageSchema)
    .optional()
    .describe(
      `include=messages: the newest messages, up to ${INCLUDED_MESSAGES} while they fit in ${MESSAGE_PAGE_BYTES / 1024} KiB (always one if any), ascending`,
    ),
  messages_next_cursor: z
    .string()
    .nullable()
    .optional()
    .describe(
      'include=messages: a cursor for GET /sessions/{id}/messages?order=desc to the older messages; null if none',
    ),
  usage: UsageTotalsSchema.optional(),
});

@Controller('api/v1/sessions')
export class SessionsController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary:
      'Create a session owned by the caller; metadata and state hold at most 64 KiB each as JSON (beyond: 413 naming the field)',
    tags: ['sessions'],
    body: CreateSessionBodySchema,
    status: 201,
    response: SessionSchema,
    errors: ['NOT_FOUND'],
  })
  create(@Caller() actor: Principal, @ValidBody() body: Valid<typeof CreateSessionBodySchema>) {
    return this.rpc.call(SessionRpc.create, { actor, ...body });
  }

  @Get()
  @ApiRoute({
    summary: "List sessions, newest activity first (the caller's own unless user_id or bot_id says otherwise)",
    tags: ['sessions'],
    query: [SessionFiltersSchema, PageQuerySchema],
    status: 200,
    response: pageSchema(SessionSchema),
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @ValidQuery() query: Valid<[typeof SessionFiltersSchema, typeof PageQuerySchema]>) {
    return this.rpc.call(SessionRpc.list, { actor, ...paged(query) });
  }

  @Get(':id')
  @ApiRoute({
    summary:
      'Read a session; include=messages adds the newest messages that fit in a page (up to 50, whole, ascending) and messages_next_cursor to the older ones, include=usage its usage totals',
    tags: ['sessions'],
    params: IdParamSchema,
    query: IncludeQuerySchema,
    status: 200,
    response: SessionWithIncludesSchema,
    errors: ['NOT_FOUND'],
  })
  async get(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() { include }: Valid<typeof IncludeQuerySchema>,
  ) {
    // The session answer decides access; the others run beside it and are dropped if it refuses.
    const [session, messages, usage] = await Promise.all([
      this.rpc.call(SessionRpc.get, { actor, id }),
      include.has('messages')
        ? this.rpc.call(MessageRpc.list, {
            actor,
            session_id: id,
            order: 'desc',
            page: { kind: 'cursor', limit: INCLUDED_MESSAGES },
          })
        : undefined,
      include.has('usage') ? this.rpc.call(UsageRpc.sessionTotals, { session_id: id }) : undefined,
    ]);
    return {
      ...session,
      // Newest first from the service, so its cursor is one for order=desc reaching the older ones.
      ...(messages
        ? { messages: [...messages.items].reverse(), messages_next_cursor: messages.next_cursor ?? null }
        : {}),
      ...(usage ? { usage } : {}),
    };
  }

  @Patch(':id')
  @ApiRoute({
    summary:
      "Change a session's title, status, metadata or state; metadata and state hold at most 64 KiB each as JSON (beyond: 413 naming the field)",
    tags: ['sessions'],
    params: IdParamSchema,
    body: UpdateSessionBodySchema,
    status: 200,
    response: SessionSchema,
    errors: ['NOT_FOUND'],
  })
  update(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() patch: Valid<typeof UpdateSessionBodySchema>,
  ) {
    return this.rpc.call(SessionRpc.update, { actor, id, patch });
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Delete a session and its messages',
    tags: ['sessions'],
    params: IdParamSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND'],
  })
  async remove(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    await this.rpc.call(SessionRpc.remove, { actor, id });
  }
}

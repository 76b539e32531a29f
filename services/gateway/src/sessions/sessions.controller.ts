import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import {
  CreateSessionBodySchema,
  IdParamSchema,
  PageQuerySchema,
  pageSchema,
  SessionFiltersSchema,
  SessionRpc,
  SessionSchema,
  UpdateSessionBodySchema,
  toPageRequest,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';

@Controller('api/v1/sessions')
export class SessionsController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a session owned by the caller',
    tags: ['sessions'],
    body: CreateSessionBodySchema,
    status: 201,
    response: SessionSchema,
    errors: ['NOT_FOUND'],
  })
  create(@Caller() actor: Principal, @Body() body: unknown) {
    return this.rpc.call(SessionRpc.create, { actor, ...parse(CreateSessionBodySchema, body, 'body') });
  }

  @Get()
  @ApiRoute({
    summary: "List sessions, newest activity first (the caller's own unless user_id or bot_id says otherwise)",
    tags: ['sessions'],
    query: [SessionFiltersSchema, PageQuerySchema],
    status: 200,
    response: pageSchema(SessionSchema),
  })
  list(@Caller() actor: Principal, @Query() query: unknown) {
    const filters = parse(SessionFiltersSchema, query, 'query');
    const page = toPageRequest(parse(PageQuerySchema, query, 'query'));
    return this.rpc.call(SessionRpc.list, { actor, ...filters, page });
  }

  @Get(':id')
  @ApiRoute({
    summary: 'Read a session',
    tags: ['sessions'],
    params: IdParamSchema,
    status: 200,
    response: SessionSchema,
    errors: ['NOT_FOUND'],
  })
  get(@Caller() actor: Principal, @Param() params: unknown) {
    return this.rpc.call(SessionRpc.get, { actor, ...parse(IdParamSchema, params, 'path') });
  }

  @Patch(':id')
  @ApiRoute({
    summary: "Change a session's title, status, metadata or state",
    tags: ['sessions'],
    params: IdParamSchema,
    body: UpdateSessionBodySchema,
    status: 200,
    response: SessionSchema,
    errors: ['NOT_FOUND'],
  })
  update(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(SessionRpc.update, { actor, id, patch: parse(UpdateSessionBodySchema, body, 'body') });
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
  async remove(@Caller() actor: Principal, @Param() params: unknown) {
    await this.rpc.call(SessionRpc.remove, { actor, ...parse(IdParamSchema, params, 'path') });
  }
}

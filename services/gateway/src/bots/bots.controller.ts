import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import {
  AccessControlRpc,
  ApiKeySchema,
  BotCreatedSchema,
  BotSchema,
  CreateBotBodySchema,
  CreateKeyBodySchema,
  IdParamSchema,
  KeyCreatedSchema,
  PageQuerySchema,
  pageSchema,
  UpdateBotBodySchema,
  toPageRequest,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';
import { BotKeyParamsSchema } from '../http/params';

@Controller('api/v1/bots')
export class BotsController {
  constructor(@Inject(RpcClient) private readonly rpc: RpcClient) {}

  @Post()
  @ApiRoute({
    summary: 'Create a bot owned by the caller; its first API key is shown this once',
    tags: ['bots'],
    body: CreateBotBodySchema,
    status: 201,
    response: BotCreatedSchema,
    errors: ['FORBIDDEN'],
  })
  create(@Caller() actor: Principal, @Body() body: unknown) {
    return this.rpc.call(AccessControlRpc.createBot, { actor, ...parse(CreateBotBodySchema, body, 'body') });
  }

  @Get()
  @ApiRoute({
    summary: 'The bots the caller may see',
    tags: ['bots'],
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(BotSchema),
  })
  list(@Caller() actor: Principal, @Query() query: unknown) {
    return this.rpc.call(AccessControlRpc.listBots, {
      actor,
      page: toPageRequest(parse(PageQuerySchema, query, 'query')),
    });
  }

  @Get(':id')
  @ApiRoute({
    summary: 'Read a bot (read right)',
    tags: ['bots'],
    params: IdParamSchema,
    status: 200,
    response: BotSchema,
    errors: ['NOT_FOUND'],
  })
  get(@Caller() actor: Principal, @Param() params: unknown) {
    return this.rpc.call(AccessControlRpc.getBot, { actor, ...parse(IdParamSchema, params, 'path') });
  }

  @Patch(':id')
  @ApiRoute({
    summary: 'Rename, describe, enable or disable a bot (manage right)',
    tags: ['bots'],
    params: IdParamSchema,
    body: UpdateBotBodySchema,
    status: 200,
    response: BotSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  update(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessControlRpc.updateBot, { actor, id, patch: parse(UpdateBotBodySchema, body, 'body') });
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Disable a bot and revoke its keys (manage right)',
    tags: ['bots'],
    params: IdParamSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  async remove(@Caller() actor: Principal, @Param() params: unknown) {
    await this.rpc.call(AccessControlRpc.deleteBot, { actor, ...parse(IdParamSchema, params, 'path') });
  }

  @Post(':id/keys')
  @ApiRoute({
    summary: 'A new API key for the bot, shown this once (manage right)',
    tags: ['bots'],
    params: IdParamSchema,
    body: CreateKeyBodySchema,
    status: 201,
    response: KeyCreatedSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  createKey(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessControlRpc.createKey, { actor, id, ...parse(CreateKeyBodySchema, body ?? {}, 'body') });
  }

  @Get(':id/keys')
  @ApiRoute({
    summary: "The bot's keys, without secrets (manage right)",
    tags: ['bots'],
    params: IdParamSchema,
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(ApiKeySchema),
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  listKeys(@Caller() actor: Principal, @Param() params: unknown, @Query() query: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(AccessControlRpc.listKeys, {
      actor,
      id,
      page: toPageRequest(parse(PageQuerySchema, query, 'query')),
    });
  }

  @Delete(':id/keys/:key_id')
  @HttpCode(204)
  @ApiRoute({
    summary: 'Revoke a key; it is refused within a second (manage right)',
    tags: ['bots'],
    params: BotKeyParamsSchema,
    status: 204,
    response: null,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  async revokeKey(@Caller() actor: Principal, @Param() params: unknown) {
    await this.rpc.call(AccessControlRpc.deleteKey, { actor, ...parse(BotKeyParamsSchema, params, 'path') });
  }
}

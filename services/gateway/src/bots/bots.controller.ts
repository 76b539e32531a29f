import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post, Put, Query } from '@nestjs/common';
import {
  AccessControlRpc,
  ActivityEventSchema,
  ActivityQuerySchema,
  ActivitySchema,
  BudgetBodySchema,
  BudgetSchema,
  IngestAcceptedSchema,
  MAX_EVENTS_PER_POST,
  QuotaSchema,
  UsageRpc,
  activityEventTimeProblems,
  activityMsgId,
  activitySubject,
  cursorPageSchema,
  ApiKeySchema,
  BotCreatedSchema,
  BotSchema,
  CreateBotBodySchema,
  CreateKeyBodySchema,
  IdParamSchema,
  KeyCreatedSchema,
  ParleyError,
  PageQuerySchema,
  pageSchema,
  UpdateBotBodySchema,
  toPageRequest,
  type Principal,
  NatsCredentialsBodySchema,
  NatsCredentialsSchema,
} from '@parley/contracts';
import { z } from 'zod';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';
import { BotKeyParamsSchema } from '../http/params';
import { EventIngest } from '../usage/event-ingest';

const ActivityEventsBodySchema = z.union([
  ActivityEventSchema,
  z.object({ events: z.array(ActivityEventSchema).min(1).max(MAX_EVENTS_PER_POST) }).strict(),
]);

@Controller('api/v1/bots')
export class BotsController {
  constructor(
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(EventIngest) private readonly ingest: EventIngest,
  ) {}

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

  @Post(':id/nats-credentials')
  @ApiRoute({
    summary:
      "Short-lived NATS credentials for the bot (JWT + nkey seed), shown this once (manage right, or the bot's own key): publish only usage.events.<id>, activity.events.<id> and usage.quota.check, receive only on its inbox prefix, 64 KiB payloads; renew before expires_at",
    tags: ['bots'],
    params: IdParamSchema,
    body: NatsCredentialsBodySchema,
    status: 201,
    response: NatsCredentialsSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN', 'NATS_CREDENTIALS_UNAVAILABLE'],
  })
  natsCredentials(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    const { ttl_seconds } = parse(NatsCredentialsBodySchema, body ?? {}, 'body');
    return this.rpc.call(AccessControlRpc.natsCredentials, { actor, id, ttl_seconds });
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

  @Put(':id/budget')
  @ApiRoute({
    summary:
      "Set the bot's budget per UTC day or month, in tokens and/or cost in one currency (manage right); crossing it publishes evt.usage.budget_exceeded once per period",
    tags: ['usage'],
    params: IdParamSchema,
    body: BudgetBodySchema,
    status: 200,
    response: BudgetSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  putBudget(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(UsageRpc.putBudget, { actor, bot_id: id, ...parse(BudgetBodySchema, body, 'body') });
  }

  @Get(':id/quota')
  @ApiRoute({
    summary: "The bot's usage in its current budget period and what is left (read right, or the bot's key)",
    tags: ['usage'],
    params: IdParamSchema,
    status: 200,
    response: QuotaSchema,
    errors: ['NOT_FOUND'],
  })
  quota(@Caller() actor: Principal, @Param() params: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(UsageRpc.quota, { actor, bot_id: id });
  }

  @Get(':id/activity')
  @ApiRoute({
    summary: "The bot's activity events, newest first (read right, or the bot's key)",
    tags: ['usage'],
    params: IdParamSchema,
    query: ActivityQuerySchema,
    status: 200,
    response: cursorPageSchema(ActivitySchema),
    errors: ['NOT_FOUND', 'INVALID_CURSOR'],
  })
  activity(@Caller() actor: Principal, @Param() params: unknown, @Query() query: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    return this.rpc.call(UsageRpc.activity, { actor, bot_id: id, ...parse(ActivityQuerySchema, query, 'query') });
  }

  @Post(':id/activity')
  @HttpCode(202)
  @ApiRoute({
    summary:
      "Report activity with the bot's key: one event or { events } (up to 500), as on activity.events.<bot_id>; 202 once durably in JetStream",
    tags: ['usage'],
    params: IdParamSchema,
    body: ActivityEventsBodySchema,
    status: 202,
    response: IngestAcceptedSchema,
    errors: ['FORBIDDEN', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT'],
  })
  reportActivity(@Caller() actor: Principal, @Param() params: unknown, @Body() body: unknown) {
    const { id } = parse(IdParamSchema, params, 'path');
    if (actor.type === 'bot' && actor.id !== id) {
      throw new ParleyError('FORBIDDEN', `the key is for bot ${actor.id}, not bot ${id}`);
    }
    return this.ingest.ingest(actor, body, {
      schema: ActivityEventSchema,
      timeProblems: activityEventTimeProblems,
      subject: (e) => activitySubject(e.bot_id),
      msgId: activityMsgId,
    });
  }
}

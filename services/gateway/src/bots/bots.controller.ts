import { Body, Controller, Delete, Get, HttpCode, Inject, Patch, Post, Put } from '@nestjs/common';
import {
  AccessControlRpc,
  ActivityEventSchema,
  ActivityQuerySchema,
  ActivitySchema,
  BudgetBodySchema,
  BudgetSchema,
  IngestAcceptedSchema,
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
  type Principal,
  NatsCredentialsBodySchema,
  NatsCredentialsSchema,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, ValidBody, ValidParams, ValidQuery, type Valid } from '../http/api-route';
import { paged } from '../http/paging';
import { BotKeyParamsSchema } from '../http/params';
import { EventIngest, eventsBodySchema } from '../usage/event-ingest';

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
  create(@Caller() actor: Principal, @ValidBody() body: Valid<typeof CreateBotBodySchema>) {
    return this.rpc.call(AccessControlRpc.createBot, { actor, ...body });
  }

  @Get()
  @ApiRoute({
    summary: 'The bots the caller may see',
    tags: ['bots'],
    query: PageQuerySchema,
    status: 200,
    response: pageSchema(BotSchema),
    errors: ['INVALID_CURSOR'],
  })
  list(@Caller() actor: Principal, @ValidQuery() query: Valid<typeof PageQuerySchema>) {
    return this.rpc.call(AccessControlRpc.listBots, { actor, ...paged(query) });
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
  get(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    return this.rpc.call(AccessControlRpc.getBot, { actor, id });
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
  update(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() patch: Valid<typeof UpdateBotBodySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.updateBot, { actor, id, patch });
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
  async remove(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
    await this.rpc.call(AccessControlRpc.deleteBot, { actor, id });
  }

  @Post(':id/keys')
  @ApiRoute({
    summary: 'A new API key for the bot, shown this once (manage right)',
    tags: ['bots'],
    params: IdParamSchema,
    body: CreateKeyBodySchema,
    optionalBody: true,
    status: 201,
    response: KeyCreatedSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN'],
  })
  createKey(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() body: Valid<typeof CreateKeyBodySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.createKey, { actor, id, ...body });
  }

  @Post(':id/nats-credentials')
  @ApiRoute({
    summary:
      "Short-lived NATS credentials for the bot (JWT + nkey seed), shown this once (manage right, or the bot's own key): publish only usage.events.<id>, activity.events.<id> and usage.quota.check, receive only on its inbox prefix, 64 KiB payloads; renew before expires_at",
    tags: ['bots'],
    params: IdParamSchema,
    body: NatsCredentialsBodySchema,
    optionalBody: true,
    status: 201,
    response: NatsCredentialsSchema,
    errors: ['NOT_FOUND', 'FORBIDDEN', 'NATS_CREDENTIALS_UNAVAILABLE'],
  })
  natsCredentials(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() { ttl_seconds }: Valid<typeof NatsCredentialsBodySchema>,
  ) {
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
    errors: ['NOT_FOUND', 'FORBIDDEN', 'INVALID_CURSOR'],
  })
  listKeys(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() query: Valid<typeof PageQuerySchema>,
  ) {
    return this.rpc.call(AccessControlRpc.listKeys, { actor, id, ...paged(query) });
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
  async revokeKey(@Caller() actor: Principal, @ValidParams() { id, key_id }: Valid<typeof BotKeyParamsSchema>) {
    await this.rpc.call(AccessControlRpc.deleteKey, { actor, id, key_id });
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
  putBudget(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidBody() budget: Valid<typeof BudgetBodySchema>,
  ) {
    return this.rpc.call(UsageRpc.putBudget, { actor, bot_id: id, ...budget });
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
  quota(@Caller() actor: Principal, @ValidParams() { id }: Valid<typeof IdParamSchema>) {
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
  activity(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @ValidQuery() query: Valid<typeof ActivityQuerySchema>,
  ) {
    return this.rpc.call(UsageRpc.activity, { actor, bot_id: id, ...query });
  }

  @Post(':id/activity')
  @HttpCode(202)
  @ApiRoute({
    summary:
      "Report activity with the bot's key: one event or { events } (up to 500), as on activity.events.<bot_id>; 202 once durably in JetStream",
    tags: ['usage'],
    params: IdParamSchema,
    body: eventsBodySchema(ActivityEventSchema),
    validatesOwnBody: true,
    status: 202,
    response: IngestAcceptedSchema,
    errors: ['FORBIDDEN', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT'],
  })
  reportActivity(
    @Caller() actor: Principal,
    @ValidParams() { id }: Valid<typeof IdParamSchema>,
    @Body() body: unknown,
  ) {
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

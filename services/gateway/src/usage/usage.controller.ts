import { Body, Controller, Get, HttpCode, Inject, Post, Put, Query } from '@nestjs/common';
import { z } from 'zod';
import {
  IngestAcceptedSchema,
  MAX_EVENTS_PER_POST,
  PriceSchema,
  PricesQuerySchema,
  PutPricesBodySchema,
  UsageEventSchema,
  UsageRecordSchema,
  UsageRecordsQuerySchema,
  UsageRpc,
  UsageSummaryQuerySchema,
  UsageSummarySchema,
  cursorPageSchema,
  usageEventTimeProblems,
  usageMsgId,
  usageSubject,
  type Principal,
} from '@parley/contracts';
import { RpcClient } from '@parley/kit';
import { Caller } from '../auth/principal';
import { ApiRoute, parse } from '../http/api-route';
import { EventIngest } from './event-ingest';

export const UsageEventsBodySchema = z.union([
  UsageEventSchema,
  z.object({ events: z.array(UsageEventSchema).min(1).max(MAX_EVENTS_PER_POST) }).strict(),
]);

@Controller('api/v1/usage')
export class UsageController {
  constructor(
    @Inject(RpcClient) private readonly rpc: RpcClient,
    @Inject(EventIngest) private readonly ingest: EventIngest,
  ) {}

  @Post('events')
  @HttpCode(202)
  @ApiRoute({
    summary:
      "Report usage with the bot's key: one event or { events } (up to 500). Validated whole first (400 names the index, nothing is stored); 202 once every event is durably in JetStream. A retried event counts once",
    tags: ['usage'],
    body: UsageEventsBodySchema,
    status: 202,
    response: IngestAcceptedSchema,
    errors: ['FORBIDDEN', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT'],
  })
  report(@Caller() actor: Principal, @Body() body: unknown) {
    return this.ingest.ingest(actor, body, {
      schema: UsageEventSchema,
      timeProblems: usageEventTimeProblems,
      subject: (e) => usageSubject(e.bot_id),
      msgId: usageMsgId,
    });
  }

  @Get('summary')
  @ApiRoute({
    summary:
      'Usage totals over [from, to) on started_at, grouped by any of bot, model, provider, channel, user, status, hour, day (in tz); rows split by currency. Without bot_id or user_id: the bots the caller may read',
    tags: ['usage'],
    query: UsageSummaryQuerySchema,
    status: 200,
    response: UsageSummarySchema,
    errors: ['FORBIDDEN'],
  })
  summary(@Caller() actor: Principal, @Query() query: unknown) {
    return this.rpc.call(UsageRpc.summary, { actor, ...parse(UsageSummaryQuerySchema, query, 'query') });
  }

  @Get('records')
  @ApiRoute({
    summary: 'Usage records, newest started_at first, with a cursor',
    tags: ['usage'],
    query: UsageRecordsQuerySchema,
    status: 200,
    response: cursorPageSchema(UsageRecordSchema),
    errors: ['FORBIDDEN', 'NOT_FOUND', 'INVALID_CURSOR'],
  })
  records(@Caller() actor: Principal, @Query() query: unknown) {
    return this.rpc.call(UsageRpc.records, { actor, ...parse(UsageRecordsQuerySchema, query, 'query') });
  }

  @Put('prices')
  @ApiRoute({
    summary:
      'Store price versions (admin). A request is priced by the version in force at its started_at; records in the versions’ windows are re-priced',
    tags: ['usage'],
    body: PutPricesBodySchema,
    status: 200,
    response: z.object({ items: z.array(PriceSchema) }),
    admin: true,
  })
  putPrices(@Caller() actor: Principal, @Body() body: unknown) {
    return this.rpc.call(UsageRpc.putPrices, { actor, prices: parse(PutPricesBodySchema, body, 'body').prices });
  }

  @Get('prices')
  @ApiRoute({
    summary: 'Price versions by provider and model, newest first within a model',
    tags: ['usage'],
    query: PricesQuerySchema,
    status: 200,
    response: cursorPageSchema(PriceSchema),
    errors: ['INVALID_CURSOR'],
  })
  listPrices(@Caller() actor: Principal, @Query() query: unknown) {
    return this.rpc.call(UsageRpc.listPrices, { actor, ...parse(PricesQuerySchema, query, 'query') });
  }
}

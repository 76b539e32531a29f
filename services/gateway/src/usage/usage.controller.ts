import { Body, Controller, Get, HttpCode, Inject, Post, Put } from '@nestjs/common';
import { z } from 'zod';
import {
  IngestAcceptedSchema,
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
import { ApiRoute, ValidBody, ValidQuery, type Valid } from '../http/api-route';
import { EventIngest, eventsBodySchema } from './event-ingest';

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
    body: eventsBodySchema(UsageEventSchema),
    validatesOwnBody: true,
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
    errors: ['FORBIDDEN', 'RANGE_TOO_LARGE'],
  })
  summary(@Caller() actor: Principal, @ValidQuery() query: Valid<typeof UsageSummaryQuerySchema>) {
    return this.rpc.call(UsageRpc.summary, { actor, ...query });
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
  records(@Caller() actor: Principal, @ValidQuery() query: Valid<typeof UsageRecordsQuerySchema>) {
    return this.rpc.call(UsageRpc.records, { actor, ...query });
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
  putPrices(@Caller() actor: Principal, @ValidBody() { prices }: Valid<typeof PutPricesBodySchema>) {
    return this.rpc.call(UsageRpc.putPrices, { actor, prices });
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
  listPrices(@Caller() actor: Principal, @ValidQuery() query: Valid<typeof PricesQuerySchema>) {
    return this.rpc.call(UsageRpc.listPrices, { actor, ...query });
  }
}

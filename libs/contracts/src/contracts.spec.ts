import { z } from 'zod';
import { ParleyError, fieldErrors, validationError } from './errors';
import {
  BatchBodySchema,
  MAX_BATCH_BYTES,
  MAX_CONTENT_BYTES,
  MessagePageSchema,
  MessageRpc,
  NewMessageSchema,
} from './message';
import { PageQuerySchema, toPageRequest } from './pagination';
import { prefixed, prefixedStream, rpc } from './rpc';
import { UpdateGroupBodySchema } from './access-control';
import { CreateSessionBodySchema, SessionRpc, UpdateSessionBodySchema } from './session';
import {
  DEFAULT_EVENT_TIME_LIMITS,
  UsageEventSchema,
  UsageRpc,
  UsageSummaryQuerySchema,
  resolveRange,
  usageEventTimeProblems,
  usageMsgId,
} from './usage';

describe('pagination', () => {
  it('takes limit 1–200 (default 50) or page/size, never both styles', () => {
    expect(toPageRequest(PageQuerySchema.parse({}))).toEqual({ kind: 'cursor', limit: 50, cursor: undefined });
    expect(toPageRequest(PageQuerySchema.parse({ limit: '200' }))).toEqual({
      kind: 'cursor',
      limit: 200,
      cursor: undefined,
    });
    expect(toPageRequest(PageQuerySchema.parse({ page: '3', size: '20' }))).toEqual({
      kind: 'offset',
      page: 3,
      size: 20,
    });
    expect(toPageRequest(PageQuerySchema.parse({ size: '20' }))).toEqual({ kind: 'offset', page: 1, size: 20 });
    for (const bad of [
      { limit: '0' },
      { limit: '201' },
      { limit: '1.5' },
      { limit: 'x' },
      { page: '0' },
      { cursor: 'c', page: '1' },
    ]) {
      expect(PageQuerySchema.safeParse(bad).success).toBe(false);
    }
  });
});

describe('internal contracts', () => {
  it('drop the fields they do not know, however nested, instead of refusing them', () => {
    const strict = z
      .object({
        a: z.string(),
        items: z.array(z.object({ b: z.number() }).strict()).optional(),
        inner: z.object({ c: z.boolean() }).strict().nullable(),
      })
      .strict();
    const contract = rpc('x.y.z', strict, strict);
    const input = { a: 'a', extra: 1, items: [{ b: 1, later: true }], inner: { c: true, more: 'x' } };
    expect(strict.safeParse(input).success).toBe(false);
    expect(contract.request.parse(input)).toEqual({ a: 'a', items: [{ b: 1 }], inner: { c: true } });
    expect(contract.response.safeParse({ a: 1 }).success).toBe(false);
  });

  it('keep their refinements and defaults', () => {
    const contract = rpc('x.y.z', UpdateGroupBodySchema, z.object({}));
    expect(contract.request.safeParse({}).success).toBe(false);
    expect(contract.request.parse({ name: 'g', unknown: 1 })).toEqual({ name: 'g' });
    const withDefault = rpc('x.y.z', z.object({ n: z.number().default(3) }).strict(), z.object({}));
    expect(withDefault.request.parse({ extra: true })).toEqual({ n: 3 });
  });
});

describe('errors', () => {
  it('names each bad field, and each unknown one', () => {
    const result = CreateSessionBodySchema.safeParse({ title: 1, surprise: true, other: 2 });
    expect(result.success).toBe(false);
    if (result.success) return;
    expect(
      fieldErrors(result.error)
        .map((e) => e.field)
        .sort(),
    ).toEqual(['other', 'surprise', 'title']);
    const nested = z.object({ a: z.object({ b: z.number() }) }).safeParse({ a: { b: 'x' } });
    if (nested.success) throw new Error('should fail');
    expect(fieldErrors(nested.error, 'query')).toEqual([{ field: 'query.a.b', message: expect.any(String) }]);
  });

  it('travels as a payload and comes back as the same error', () => {
    const error = new ParleyError('NOT_FOUND', 'session x not found');
    expect(error.toPayload()).toEqual({
      code: 'NOT_FOUND',
      status: 404,
      detail: 'session x not found',
      retryable: false,
    });
    const back = ParleyError.fromPayload(error.toPayload());
    expect(back).toMatchObject({ code: 'NOT_FOUND', status: 404, retryable: false });
    expect(ParleyError.fromPayload({ code: 'SOMETHING_NEW', status: 418, detail: 'd', retryable: false }).code).toBe(
      'INTERNAL',
    );
    expect(new ParleyError('UPSTREAM_TIMEOUT', 'slow').retryable).toBe(true);
  });
});

describe('size limits', () => {
  const KiB = 1024;
  const actor = { type: 'user', id: '01900000-0000-7000-8000-000000000001', is_admin: false } as const;
  const sessionId = '01900000-0000-7000-8000-000000000002';
  /** The problem a schema's refusal becomes, as the gateway and the RPC server both build it. */
  const problem = (schema: z.ZodType, value: unknown) => {
    const result = schema.safeParse(value);
    if (result.success) return undefined;
    const error = validationError(result.error);
    return { code: error.code, status: error.status, fields: error.errors?.map((e) => e.field) };
  };
  const tooLarge = (...fields: string[]) => ({ code: 'PAYLOAD_TOO_LARGE', status: 413, fields });
  /** A JSON object of exactly `bytes` bytes. */
  const objectOf = (bytes: number) => ({ blob: 'm'.repeat(bytes - '{"blob":""}'.length) });

  it('takes content up to 256 KiB of UTF-8 and refuses a byte more with 413 naming it', () => {
    const at = 'x'.repeat(MAX_CONTENT_BYTES);
    expect(problem(NewMessageSchema, { role: 'user', content: at })).toBeUndefined();
    expect(problem(NewMessageSchema, { role: 'user', content: `${at}x` })).toEqual(tooLarge('content'));
    // Counted in bytes, not characters: 128 Ki two-byte characters are exactly the limit.
    expect(problem(NewMessageSchema, { role: 'user', content: 'é'.repeat(128 * KiB) })).toBeUndefined();
    expect(problem(NewMessageSchema, { role: 'user', content: `${'é'.repeat(128 * KiB)}x` })).toEqual(
      tooLarge('content'),
    );
  });

  it('holds at the message service boundary too, in the RPC requests', () => {
    const message = { role: 'user', content: 'x'.repeat(MAX_CONTENT_BYTES + 1) };
    expect(problem(MessageRpc.append.request, { actor, session_id: sessionId, message })).toEqual(
      tooLarge('message.content'),
    );
    expect(
      problem(MessageRpc.appendBatch.request, {
        actor,
        session_id: sessionId,
        messages: [{ role: 'user', content: 'a' }, message],
      }),
    ).toEqual(tooLarge('messages.1.content'));
    const many = Array.from({ length: 4 }, () => ({ role: 'user', content: 'x'.repeat(240 * KiB) }));
    expect(problem(MessageRpc.appendBatch.request, { actor, session_id: sessionId, messages: many })).toEqual(
      tooLarge('messages'),
    );
    expect(
      problem(SessionRpc.update.request, { actor, id: sessionId, patch: { state: objectOf(64 * KiB + 1) } }),
    ).toEqual(tooLarge('patch.state'));
  });

  it('bounds metadata, state and media at 64 KiB as JSON', () => {
    expect(problem(NewMessageSchema, { role: 'user', content: '', metadata: objectOf(64 * KiB) })).toBeUndefined();
    expect(problem(NewMessageSchema, { role: 'user', content: '', metadata: objectOf(64 * KiB + 1) })).toEqual(
      tooLarge('metadata'),
    );
    const media = Array.from({ length: 20 }, (_, i) => ({ type: 'image', url: `https://x/${i}/${'p'.repeat(4000)}` }));
    expect(problem(NewMessageSchema, { role: 'user', content: '', media })).toEqual(tooLarge('media'));
    for (const field of ['metadata', 'state']) {
      expect(problem(CreateSessionBodySchema, { [field]: objectOf(64 * KiB) })).toBeUndefined();
      expect(problem(CreateSessionBodySchema, { [field]: objectOf(64 * KiB + 1) })).toEqual(tooLarge(field));
      expect(problem(UpdateSessionBodySchema, { [field]: objectOf(64 * KiB + 1) })).toEqual(tooLarge(field));
    }
  });

  it('takes a batch up to 768 KiB together, measured as the JSON of its messages', () => {
    const batch = (total: number) => {
      const messages = Array.from({ length: 500 }, () => ({ role: 'user', content: '', tokens: 0 }));
      const spare = total - JSON.stringify(messages).length;
      messages.forEach((m, i) => (m.content = 'q'.repeat(Math.floor(spare / 500) + (i < spare % 500 ? 1 : 0))));
      expect(JSON.stringify(messages).length).toBe(total);
      return { messages };
    };
    expect(problem(BatchBodySchema, batch(MAX_BATCH_BYTES))).toBeUndefined();
    expect(problem(BatchBodySchema, batch(MAX_BATCH_BYTES + 1))).toEqual(tooLarge('messages'));
    // A count over the limit stays a plain validation error.
    const many = { messages: Array.from({ length: 501 }, () => ({ role: 'user', content: 'x' })) };
    expect(problem(BatchBodySchema, many)?.status).toBe(400);
  });

  it('names only the fields over a limit when others are wrong too', () => {
    expect(problem(NewMessageSchema, { role: 'robot', content: 'x'.repeat(MAX_CONTENT_BYTES + 1) })).toEqual(
      tooLarge('content'),
    );
    expect(problem(NewMessageSchema, { role: 'robot', content: 'x' })).toMatchObject({ status: 400 });
    expect(problem(NewMessageSchema, { role: 'user', content: 'x', tokens: 2 ** 31 })).toMatchObject({ status: 400 });
  });
});

describe('message pages', () => {
  const message = {
    id: '01900000-0000-7000-8000-000000000001',
    session_id: '01900000-0000-7000-8000-000000000002',
    seq: 1,
    role: 'user',
    content: 'hi',
    tokens: 0,
    metadata: {},
    media: [],
    feedback: null,
    copied: false,
    sensitive_status: 'unchecked',
    client_message_id: null,
    created_at: '2026-11-24T10:00:00.000Z',
  };

  it('keeps a page/size page whole when it carries a cursor to the rest of it', () => {
    const cut = { items: [message], total: 6, page: 1, size: 6, next_cursor: 'abc' };
    expect(MessagePageSchema.parse(cut)).toEqual(cut);
    expect(MessagePageSchema.parse({ items: [message], total: 1, page: 1, size: 6 })).toEqual({
      items: [message],
      total: 1,
      page: 1,
      size: 6,
    });
    expect(MessagePageSchema.parse({ items: [message], next_cursor: null })).toEqual({
      items: [message],
      next_cursor: null,
    });
  });
});

describe('subject prefixes', () => {
  it('prefixes subjects with a dot and stream names with an underscore', () => {
    expect(prefixed('', 'usage.events.b1')).toBe('usage.events.b1');
    expect(prefixed('t1', 'usage.events.b1')).toBe('t1.usage.events.b1');
    expect(prefixedStream('', 'USAGE')).toBe('USAGE');
    expect(prefixedStream('t-1', 'USAGE')).toBe('t-1_USAGE');
  });
});

describe('usage contracts', () => {
  const event = {
    request_id: 'chatcmpl-1',
    bot_id: '01900000-0000-7000-8000-000000000001',
    status: 'completed',
    started_at: '2026-11-24T10:00:00Z',
  };

  it('takes a usage event as bots send it, and refuses what would count wrong', () => {
    expect(UsageEventSchema.parse(event)).toMatchObject({ input_tokens: 0, output_tokens: 0 });
    for (const bad of [
      { ...event, input_tokens: -1 },
      { ...event, input_tokens: 1.5 },
      { ...event, input_token: 5 },
      { ...event, status: 'done' },
      { ...event, request_id: 'has space' },
      { ...event, model: 'gpt\u0000' },
      { ...event, started_at: '2026-11-24 10:00' },
    ]) {
      expect(UsageEventSchema.safeParse(bad).success).toBe(false);
    }
    expect(usageMsgId(UsageEventSchema.parse(event))).toBe(`${event.bot_id}:chatcmpl-1:completed`);
  });

  it('refuses absurd times relative to the receiver clock', () => {
    const now = Date.parse('2026-11-24T10:00:00Z');
    const at = (started_at: string, completed_at?: string) =>
      usageEventTimeProblems(
        UsageEventSchema.parse({ ...event, started_at, completed_at }),
        now,
        DEFAULT_EVENT_TIME_LIMITS,
      );
    expect(at('2026-11-24T10:04:59Z')).toEqual([]);
    expect(at('2026-11-24T10:05:01Z')).toEqual([{ field: 'started_at', message: 'more than 300 s in the future' }]);
    expect(at('2026-08-01T00:00:00Z')).toEqual([{ field: 'started_at', message: 'older than 90 days' }]);
    expect(at('2026-11-24T09:00:00Z', '2026-11-24T08:59:59Z')).toEqual([
      { field: 'completed_at', message: 'earlier than started_at' },
    ]);
  });

  it('reads summary queries: group_by keys, a known time zone, an ordered range, 24 hours by default', () => {
    expect(UsageSummaryQuerySchema.parse({ group_by: 'model,day', tz: 'Asia/Shanghai' })).toMatchObject({
      group_by: ['model', 'day'],
      tz: 'Asia/Shanghai',
    });
    expect(UsageSummaryQuerySchema.parse({}).tz).toBe('UTC');
    for (const bad of [
      { group_by: 'week' },
      { group_by: 'model,model' },
      { tz: 'Mars/Olympus' },
      { tz: '+08:00' },
      { from: '2026-11-24T10:00:00Z', to: '2026-11-24T09:00:00Z' },
    ]) {
      expect(UsageSummaryQuerySchema.safeParse(bad).success).toBe(false);
    }
    const { from, to } = resolveRange({}, Date.parse('2026-11-24T10:00:00Z'));
    expect([from.toISOString(), to.toISOString()]).toEqual(['2026-11-23T10:00:00.000Z', '2026-11-24T10:00:00.000Z']);
  });

  it('bounds a summary to 400 days, 31 grouped by hour, and sends the resolved range on', () => {
    const DAY = 86_400_000;
    const to = '2026-11-24T10:00:00.000Z';
    const back = (days: number, ms = 0) => new Date(Date.parse(to) - days * DAY - ms).toISOString();
    const problem = (query: Record<string, unknown>) => {
      const result = UsageSummaryQuerySchema.safeParse(query);
      if (result.success) return undefined;
      const error = validationError(result.error, 'query');
      return { code: error.code, status: error.status, fields: error.errors?.map((e) => e.field) };
    };
    const rangeTooLarge = { code: 'RANGE_TOO_LARGE', status: 400, fields: ['query.from'] };
    expect(problem({ from: back(400), to })).toBeUndefined();
    expect(problem({ from: back(400, 1), to })).toEqual(rangeTooLarge);
    expect(problem({ from: back(400), to, group_by: 'day,model' })).toBeUndefined();
    expect(problem({ from: back(31), to, group_by: 'hour' })).toBeUndefined();
    expect(problem({ from: back(31, 1), to, group_by: 'model,hour' })).toEqual(rangeTooLarge);
    expect(problem({ from: '1950-01-01T00:00:00Z', to: '2050-01-01T00:00:00Z', group_by: 'day' })).toEqual(
      rangeTooLarge,
    );
    // `to` defaults to now: a `from` alone is measured from now.
    expect(problem({ from: '2000-01-01T00:00:00Z' })).toEqual(rangeTooLarge);
    expect(problem({ from: new Date(Date.now() + 60_000).toISOString() })).toMatchObject({
      code: 'VALIDATION_FAILED',
      fields: ['query.from'],
    });
    expect(problem({ from: to, to })).toMatchObject({ code: 'VALIDATION_FAILED', fields: ['query.from'] });
    // Other problems come first: a bad zone is named, not the range.
    expect(problem({ from: back(500), to, tz: 'Mars/Olympus' })).toMatchObject({
      code: 'VALIDATION_FAILED',
      fields: ['query.tz'],
    });

    const parsed = UsageSummaryQuerySchema.parse({ to });
    expect([parsed.from, parsed.to]).toEqual([back(1), to]);
    // The same limits hold at the usage service's NATS boundary.
    const actor = { type: 'user', id: '01900000-0000-7000-8000-000000000001', is_admin: true };
    const request = UsageRpc.summary.request.safeParse({ actor, from: back(32), to, group_by: ['hour'], tz: 'UTC' });
    expect(request.success).toBe(false);
    if (!request.success) expect(validationError(request.error).code).toBe('RANGE_TOO_LARGE');
    expect(UsageRpc.summary.request.safeParse({ actor, from: back(32), to, group_by: ['day'] }).success).toBe(true);
  });
});

import type { UsageEvent } from '@parley/contracts';
import { applyEvent, type RecordState } from './record-state';
import fc from 'fast-check';
import { RollupDeltas, floorHour, isoText, utcDay } from './rollup';
import { localTimestamp, offsetMinutes } from './zones';

const now = new Date('2026-11-24T12:00:00Z');
const event = (status: UsageEvent['status'], extra: Partial<UsageEvent> = {}): UsageEvent => ({
  request_id: 'r-1',
  bot_id: '01900000-0000-7000-8000-000000000001',
  status,
  input_tokens: 10,
  output_tokens: 5,
  started_at: '2026-11-24T10:15:00.000Z',
  ...extra,
});

describe(applyEvent.name, () => {
  const first = (status: UsageEvent['status'], extra?: Partial<UsageEvent>) =>
    applyEvent(undefined, event(status, extra), now).state;

  it.each([
    // [stored status, arriving status, outcome, status after]
    ['started', 'started', 'duplicate', 'started'],
    ['started', 'completed', 'updated', 'completed'],
    ['started', 'failed', 'updated', 'failed'],
    ['completed', 'started', 'stale', 'completed'],
    ['completed', 'completed', 'duplicate', 'completed'],
    ['completed', 'failed', 'stale', 'completed'],
    ['failed', 'completed', 'stale', 'failed'],
    ['failed', 'failed', 'duplicate', 'failed'],
  ] as const)('%s then %s: %s, %s', (stored, arriving, outcome, after) => {
    const applied = applyEvent(first(stored), event(arriving, { input_tokens: 99 }), now);
    expect(applied.outcome).toBe(outcome);
    expect(applied.state.status).toBe(after);
  });

  it('creates a record from the first report, total defaulting to input + output', () => {
    const applied = applyEvent(undefined, event('started', { output_tokens: 0, model: 'm', channel: 'web' }), now);
    expect(applied.outcome).toBe('inserted');
    expect(applied.state).toMatchObject({
      status: 'started',
      inputTokens: 10,
      outputTokens: 0,
      totalTokens: 10,
      model: 'm',
      channel: 'web',
    });
    expect(first('completed', { total_tokens: 40 }).totalTokens).toBe(40);
  });

  it('keeps started_at from the first report; the end brings its tokens and fills what the start left out', () => {
    const started = first('started', { model: null });
    const ended = applyEvent(
      started,
      event('completed', {
        started_at: '2026-11-24T10:16:00.000Z',
        completed_at: '2026-11-24T10:16:30.000Z',
        model: 'gpt-4o',
        input_tokens: 812,
        output_tokens: 96,
      }),
      now,
    ).state;
    expect(ended.startedAt.toISOString()).toBe('2026-11-24T10:15:00.000Z');
    expect(ended).toMatchObject({ model: 'gpt-4o', inputTokens: 812, outputTokens: 96, totalTokens: 908 });
    expect(ended.completedAt?.toISOString()).toBe('2026-11-24T10:16:30.000Z');
  });
});

describe(RollupDeltas.name, () => {
  const record = (over: Partial<RecordState>): RecordState => ({
    botId: 'b',
    requestId: 'r',
    sessionId: null,
    userId: null,
    channel: null,
    status: 'started',
    provider: 'p',
    model: 'm',
    inputTokens: 10,
    outputTokens: 0,
    totalTokens: 10,
    startedAt: new Date('2026-11-24T10:15:00Z'),
    completedAt: null,
    cost: null,
    currency: null,
    priceId: null,
    createdAt: now,
    updatedAt: now,
    ...over,
  });

  it('moves a request between status rows without counting it twice', () => {
    const deltas = new RollupDeltas();
    const started = record({});
    const completed = record({
      status: 'completed',
      outputTokens: 5,
      totalTokens: 15,
      cost: '0.5',
      currency: 'USD',
      priceId: 'v',
    });
    deltas.add(started, completed);
    const rows = deltas.hourlyRows();
    expect(rows.map((r) => [r.status, r.currency, r.requests, r.totalTokens, r.costUnits, r.unpricedRequests])).toEqual(
      [
        ['completed', 'USD', 1, 15, 500_000_000_000n, 0],
        ['started', '', -1, -10, 0n, -1],
      ],
    );
    expect(rows[0].hour.toISOString()).toBe('2026-11-24T10:00:00.000Z');
    expect(deltas.dailyRows().map((d) => [d.day, d.currency, d.requests, d.totalTokens])).toEqual([
      ['2026-11-24', '', -1, -10],
      ['2026-11-24', 'USD', 1, 15],
    ]);
  });

  it('leaves out rows that net to zero', () => {
    const deltas = new RollupDeltas();
    const r = record({ status: 'completed' });
    deltas.add(undefined, r);
    deltas.add(r, undefined);
    expect(deltas.hourlyRows()).toEqual([]);
    expect(deltas.dailyRows()).toEqual([]);
  });

  it('buckets by UTC hour and day', () => {
    expect(floorHour(new Date('2026-11-24T23:59:59.999Z')).toISOString()).toBe('2026-11-24T23:00:00.000Z');
    expect(utcDay(new Date('2026-11-24T23:59:59.999Z'))).toBe('2026-11-24');
  });
});

describe('time zones', () => {
  it('knows offsets and writes local hours in RFC 3339', () => {
    expect(offsetMinutes('Asia/Kolkata', now)).toBe(330);
    expect(offsetMinutes('America/New_York', new Date('2026-07-01T00:00:00Z'))).toBe(-240);
    expect(offsetMinutes('America/New_York', now)).toBe(-300);
    expect(localTimestamp(new Date('2026-11-24T10:00:00Z'), 'Asia/Shanghai')).toBe('2026-11-24T18:00:00+08:00');
    expect(localTimestamp(new Date('2026-11-24T10:00:00Z'), 'UTC')).toBe('2026-11-24T10:00:00Z');
    expect(localTimestamp(new Date('2026-11-24T04:30:00Z'), 'Asia/Kolkata')).toBe('2026-11-24T10:00:00+05:30');
  });
});

describe(isoText.name, () => {
  it('writes what toISOString writes, for every instant of years 0001 to 9999', () => {
    for (const text of [
      '0001-01-01T00:00:00.000Z',
      '1969-12-31T23:59:59.999Z',
      '1970-01-01T00:00:00.000Z',
      '9999-12-31T23:59:59.999Z',
    ]) {
      expect(isoText(new Date(text))).toBe(text);
    }
    const min = Date.parse('0001-01-01T00:00:00.000Z');
    const max = Date.parse('9999-12-31T23:59:59.999Z');
    fc.assert(
      fc.property(fc.integer({ min, max }), (ms) => isoText(new Date(ms)) === new Date(ms).toISOString()),
      { numRuns: 20_000 },
    );
  });
});

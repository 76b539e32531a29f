import fc from 'fast-check';
import { z } from 'zod';
import { validationError } from './errors';
import {
  INT32_MAX,
  INT32_MIN,
  MAX_INSTANT_MS,
  MIN_INSTANT_MS,
  NUL_MESSAGE,
  SURROGATE_MESSAGE,
  dateTime,
  int32,
  isTimeZone,
  jsonObject,
  jsonProblems,
  list,
  queryInt,
  text,
  textProblem,
  timeZone,
} from './input';

/** Every property runs from this seed, so a failure reproduces. */
const seed = 20261130;
const runs = { seed, numRuns: 200 };

/** One UTF-16 code unit, surrogates included. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
/** One Unicode scalar value other than NUL (never a surrogate). */
const cleanChar = fc
  .integer({ min: 1, max: 0x10ffff })
  .filter((c) => c < 0xd800 || c > 0xdfff)
  .map((c) => String.fromCodePoint(c));
const cleanText = fc.string({ unit: cleanChar, maxLength: 40 });
const loneSurrogate = fc.oneof(
  fc.integer({ min: 0xd800, max: 0xdbff }).map((c) => String.fromCharCode(c)),
  fc.integer({ min: 0xdc00, max: 0xdfff }).map((c) => String.fromCharCode(c)),
);
/** `value` with `inserted` placed at some position in it. */
const withInserted = (value: fc.Arbitrary<string>, inserted: fc.Arbitrary<string>) =>
  fc
    .tuple(value, inserted, fc.nat())
    .map(([v, i, at]) => v.slice(0, at % (v.length + 1)) + i + v.slice(at % (v.length + 1)));

/** The oracle: what a PostgreSQL text column can hold. */
const storable = (s: string) => !s.includes('\u0000') && (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** The field errors a schema gives for a value, as the gateway would name them. */
function errorsOf(schema: z.ZodType, value: unknown) {
  const result = schema.safeParse(value);
  if (result.success) return undefined;
  const problem = validationError(result.error);
  return { status: problem.status, errors: problem.errors ?? [] };
}

describe('text', () => {
  const field = z.object({ title: text({ max: 1000 }) });

  it('finds exactly the strings PostgreSQL cannot store as text', () => {
    fc.assert(
      fc.property(fc.string({ unit: codeUnit, maxLength: 30 }), (s) => {
        expect(textProblem(s) === undefined).toBe(storable(s));
      }),
      runs,
    );
    fc.assert(
      fc.property(cleanText, (s) => {
        expect(textProblem(s)).toBeUndefined();
        expect(field.safeParse({ title: s }).success).toBe(true);
      }),
      runs,
    );
  });

  it('refuses NUL anywhere, naming the field', () => {
    fc.assert(
      fc.property(withInserted(cleanText, fc.constant('\u0000')), (s) => {
        expect(errorsOf(field, { title: s })).toEqual({
          status: 400,
          errors: [{ field: 'title', message: NUL_MESSAGE }],
        });
      }),
      runs,
    );
  });

  it('refuses an unpaired surrogate anywhere, even beside a pair', () => {
    fc.assert(
      fc.property(
        withInserted(
          fc.string({ unit: 'binary', maxLength: 20 }).map((s) => s.replaceAll('\u0000', '')),
          loneSurrogate,
        ),
        (s) => {
          expect(errorsOf(field, { title: s })?.errors).toEqual([{ field: 'title', message: SURROGATE_MESSAGE }]);
        },
      ),
      runs,
    );
    // Explicit cases: a pair is fine, either half alone is not, nor two highs or a reversed pair.
    expect(textProblem('😀')).toBeUndefined();
    for (const bad of ['\ud83d', '\ude00', 'a\ud83d', '\ude00a', '\ud83d\ud83d\ude00', '\ude00\ud83d']) {
      expect(textProblem(bad)).toBe(SURROGATE_MESSAGE);
    }
  });

  it('bounds length, trims, and with maxBytes answers 413 beyond it', () => {
    const title = text({ trim: true, min: 1, max: 5 });
    expect(title.parse('  abc ')).toBe('abc');
    expect(title.safeParse('   ').success).toBe(false);
    expect(title.safeParse('abcdef').success).toBe(false);
    const content = z.object({ content: text({ max: 10, maxBytes: 10 }) });
    expect(errorsOf(content, { content: 'ééééé' })).toBeUndefined();
    expect(errorsOf(content, { content: 'éééééé' })).toEqual({
      status: 413,
      errors: [{ field: 'content', message: 'larger than 10 bytes' }],
    });
    const name = text({ max: 10, noControl: true });
    expect(name.safeParse('a\nb').success).toBe(false);
    expect(name.safeParse('a b').success).toBe(true);
    expect(text({ max: 10 }).safeParse('a\nb').success).toBe(true);
  });

  it('refuses what is not a string', () => {
    for (const bad of [1, true, null, [], {}, ['a']]) expect(text({ max: 5 }).safeParse(bad).success).toBe(false);
  });
});

describe('jsonObject', () => {
  const body = z.object({ metadata: jsonObject({ maxBytes: 4096 }) });
  const cleanJson = fc.jsonValue({ maxDepth: 5, stringUnit: cleanChar });
  const cleanObject = fc.dictionary(cleanText, cleanJson, { maxKeys: 5 });
  /** `depth` containers inside each other, objects and arrays in turn, an object outermost. */
  const nest = (depth: number): unknown => {
    let value: unknown = 1;
    for (let level = depth; level >= 1; level--) value = level % 2 === 1 ? { k: value } : [value];
    return value;
  };

  it('accepts any JSON object of clean text within its depth and size', () => {
    fc.assert(
      fc.property(cleanObject, (value) => {
        fc.pre(Buffer.byteLength(JSON.stringify(value)) <= 4096);
        expect(errorsOf(body, { metadata: value })).toBeUndefined();
      }),
      runs,
    );
  });

  it('refuses NUL or an unpaired surrogate in any string or key, naming where', () => {
    const bad = fc.oneof(fc.constant('\u0000'), loneSurrogate);
    fc.assert(
      fc.property(cleanObject, cleanText, withInserted(cleanText, bad), fc.boolean(), (value, key, dirty, asKey) => {
        const metadata = asKey ? { ...value, nested: { [dirty]: 1 } } : { ...value, nested: { [key]: [dirty] } };
        const result = errorsOf(body, { metadata });
        expect(result?.status).toBe(400);
        const fields = result!.errors.map((e) => e.field);
        expect(fields).toContain(asKey ? 'metadata.nested' : `metadata.nested.${key}.0`);
      }),
      runs,
    );
  });

  it('nests at most 32 levels, whatever the mix of objects and arrays', () => {
    expect(errorsOf(body, { metadata: nest(32) })).toBeUndefined();
    fc.assert(
      fc.property(fc.integer({ min: 33, max: 2000 }), (depth) => {
        expect(errorsOf(body, { metadata: nest(depth) })).toEqual({
          status: 400,
          errors: [{ field: 'metadata', message: 'nests deeper than 32 levels' }],
        });
      }),
      { seed, numRuns: 30 },
    );
    // Far deeper than any stack: walked without recursion.
    expect(jsonProblems(nest(200_000))).toEqual([{ path: [], message: 'nests deeper than 32 levels' }]);
  });

  it('refuses numbers that are not finite (1e400 parses as Infinity)', () => {
    const parsed = JSON.parse('{"a":{"b":1e400},"c":[-1e400]}') as Record<string, unknown>;
    expect(errorsOf(body, { metadata: parsed })?.errors).toEqual([
      { field: 'metadata.a.b', message: 'must be a finite number' },
      { field: 'metadata.c.0', message: 'must be a finite number' },
    ]);
  });

  it('answers 413 naming the field beyond its size, and refuses what is not an object', () => {
    expect(errorsOf(body, { metadata: { a: 'x'.repeat(5000) } })).toEqual({
      status: 413,
      errors: [{ field: 'metadata', message: 'larger than 4 KiB as JSON' }],
    });
    for (const bad of [[], 'x', 1, null, true]) expect(errorsOf(body, { metadata: bad })?.status).toBe(400);
  });

  it('names at most a few problems however many there are', () => {
    const metadata = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`k${i}`, '\u0000']));
    expect(errorsOf(body, { metadata })!.errors.length).toBeLessThanOrEqual(10);
  });
});

describe('numbers', () => {
  it('int32 holds exactly the integers PostgreSQL integer holds, within the given bounds', () => {
    const tokens = int32({ min: 0 });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: INT32_MAX }), (n) => expect(tokens.safeParse(n).success).toBe(true)),
      runs,
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: INT32_MAX + 1, max: Number.MAX_SAFE_INTEGER }),
          fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
          fc.double({ noInteger: true }),
          fc.constantFrom(Infinity, -Infinity, NaN, 2 ** 53 + 2, 3_000_000_000),
        ),
        (n) => expect(tokens.safeParse(n).success).toBe(false),
      ),
      runs,
    );
    expect(int32().safeParse(INT32_MIN).success).toBe(true);
    expect(int32().safeParse(INT32_MIN - 1).success).toBe(false);
    expect(int32({ min: -(10 ** 12), max: 10 ** 12 }).safeParse(INT32_MAX + 1).success).toBe(false);
    expect(tokens.safeParse(JSON.parse('1e400')).success).toBe(false);
    expect(tokens.safeParse('12').success).toBe(false);
  });

  it('queryInt reads query strings, refusing what is not an integer in range', () => {
    const limit = queryInt({ min: 1, max: 200 });
    expect(limit.parse('50')).toBe(50);
    for (const bad of ['0', '201', '1.5', 'abc', '1e400', '-1', '99999999999999999999', '']) {
      expect(limit.safeParse(bad).success).toBe(false);
    }
  });
});

describe('dateTime', () => {
  const at = dateTime();
  const offset = fc
    .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
    .map(([sign, h, m]) => `${sign}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`);

  it('accepts every instant of the years 0001–9999, in UTC or with an offset', () => {
    const inRange = fc.date({
      min: new Date(MIN_INSTANT_MS + 86_400_000),
      max: new Date(MAX_INSTANT_MS - 86_400_000),
      noInvalidDate: true,
    });
    fc.assert(
      fc.property(inRange, offset, (date, zone) => {
        expect(at.safeParse(date.toISOString()).success).toBe(true);
        // The same wall-clock time read in another zone is still within range (a day from the edges).
        expect(at.safeParse(date.toISOString().replace('Z', zone)).success).toBe(true);
      }),
      runs,
    );
  });

  it('refuses dates that do not exist, times without a zone, and instants beyond the range', () => {
    for (const bad of [
      '2026-02-30T00:00:00Z',
      '2023-02-29T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-11-23T24:00:00Z',
      '2026-11-23T10:00:00',
      '2026-11-23',
      '0000-01-01T00:00:00Z',
      '0001-01-01T00:00:00+00:01',
      '9999-12-31T23:59:59-00:01',
      '+010000-01-01T00:00:00Z',
      `2026-11-23T10:00:00.${'1'.repeat(100)}Z`,
      '2026-11-23T10:00:00Z\u0000',
      'now',
    ]) {
      expect({ bad, ok: at.safeParse(bad).success }).toEqual({ bad, ok: false });
    }
    expect(at.safeParse('2024-02-29T00:00:00Z').success).toBe(true);
    expect(at.safeParse('0001-01-01T00:00:00Z').success).toBe(true);
    expect(at.safeParse('9999-12-31T23:59:59.999Z').success).toBe(true);
  });
});

describe('timeZone', () => {
  it('accepts every zone the runtime lists, UTC, and Area/Location aliases', () => {
    for (const tz of [...Intl.supportedValuesOf('timeZone'), 'UTC', 'Asia/Kolkata', 'Europe/Kyiv']) {
      expect({ tz, ok: isTimeZone(tz) }).toEqual({ tz, ok: true });
    }
    expect(timeZone().safeParse('Asia/Shanghai').success).toBe(true);
  });

  it('refuses offsets, legacy ids PostgreSQL does not know, and anything else', () => {
    for (const tz of [
      '+05:00',
      'UTC+8',
      'AET',
      'BET',
      'US/Pacific-New',
      'Canada/East-Saskatchewan',
      'Mars/Olympus',
      '',
      'UTC\u0000',
      'x'.repeat(65),
    ]) {
      expect({ tz, ok: timeZone().safeParse(tz).success }).toEqual({ tz, ok: false });
    }
    fc.assert(
      fc.property(fc.string({ unit: codeUnit, maxLength: 20 }), (s) => {
        fc.pre(!Intl.supportedValuesOf('timeZone').includes(s) && s !== 'UTC' && !s.includes('/'));
        expect(timeZone().safeParse(s).success).toBe(false);
      }),
      runs,
    );
  });
});

describe('list', () => {
  it('holds between min and max items', () => {
    const ids = list(z.number(), { min: 1, max: 3 });
    fc.assert(
      fc.property(fc.array(fc.integer(), { maxLength: 10 }), (items) => {
        expect(ids.safeParse(items).success).toBe(items.length >= 1 && items.length <= 3);
      }),
      runs,
    );
  });
});

import { z } from 'zod';
import { tooLarge } from './errors';

/*
 * The building blocks of every field a client or a NATS caller may send (API.md, Conventions):
 * text never holds NUL or unpaired surrogates, JSON objects nest at most 32 levels and hold
 * only what PostgreSQL's jsonb can store, numbers are finite and integers stay within their
 * range, timestamps are real instants that PostgreSQL's timestamptz and JavaScript both carry,
 * time zones are ones PostgreSQL knows, and every string and list has a bound. A value outside
 * is a 400 naming the field (or a 413 when over a size limit), at the gateway and again at each
 * service's NATS boundary, so nothing reaches a database that would refuse it with a 500.
 */

/** An unpaired UTF-16 surrogate: a high one not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** C0 and C1 control characters (NUL included). */
const CONTROL = /\p{Cc}/u;

export const NUL_MESSAGE = 'must not contain NUL (U+0000)';
export const SURROGATE_MESSAGE = 'must not contain unpaired surrogates';

/** Why a string may not be stored as text, or undefined when it may. */
export function textProblem(value: string): string | undefined {
  if (value.includes('\u0000')) return NUL_MESSAGE;
  if (LONE_SURROGATE.test(value)) return SURROGATE_MESSAGE;
  return undefined;
}

const utf8Length = (value: string) => Buffer.byteLength(value, 'utf8');

export interface TextOptions {
  /** Most characters (UTF-16 code units, as JSON Schema's `maxLength` counts them). */
  max: number;
  /** Fewest characters (after trimming, with `trim`). */
  min?: number;
  /** Trim surrounding whitespace first. */
  trim?: boolean;
  /** Most UTF-8 bytes: beyond, 413 naming the field. */
  maxBytes?: number;
  /** Also refuse every other control character (names, identifiers, labels). */
  noControl?: boolean;
  pattern?: RegExp;
  patternMessage?: string;
}

/** A text field: bounded, and never NUL or an unpaired surrogate (PostgreSQL text cannot hold them). */
export function text(options: TextOptions) {
  let schema = z.string();
  if (options.trim) schema = schema.trim();
  if (options.min !== undefined) schema = schema.min(options.min);
  schema = schema.max(options.max);
  if (options.pattern) schema = schema.regex(options.pattern, options.patternMessage);
  const { maxBytes, noControl } = options;
  const checked = schema.superRefine((value, ctx) => {
    const problem = textProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, input: value });
    else if (noControl && CONTROL.test(value)) {
      ctx.addIssue({ code: 'custom', message: 'must not contain control characters', input: value });
    }
    if (maxBytes !== undefined && utf8Length(value) > maxBytes) {
      ctx.addIssue({ code: 'custom', input: value, ...tooLarge(`larger than ${describeBytes(maxBytes)}`) });
    }
  });
  return maxBytes === undefined ? checked : checked.meta({ 'x-max-bytes': maxBytes });
}

export function describeBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

// ---------------------------------------------------------------------------------------
// JSON objects

/** How deep a JSON object may nest (the object itself is level 1). */
export const MAX_JSON_DEPTH = 32;
/** A JSON object names at most this many of its problems. */
const MAX_JSON_PROBLEMS = 10;

export interface JsonProblem {
  path: (string | number)[];
  message: string;
}

/**
 * What keeps a JSON value from being stored as jsonb: nesting deeper than `maxDepth`, a key or
 * a string with NUL or an unpaired surrogate, a number that is not finite (`1e400` parses as
 * Infinity), or something that is not JSON at all. Walked without recursion, so no depth
 * overflows the stack; at most a few problems are named.
 */
export function jsonProblems(root: unknown, maxDepth = MAX_JSON_DEPTH): JsonProblem[] {
  const problems: JsonProblem[] = [];
  const stack: { value: unknown; path: (string | number)[]; depth: number }[] = [{ value: root, path: [], depth: 0 }];
  let tooDeep = false;
  while (stack.length > 0 && problems.length < MAX_JSON_PROBLEMS) {
    const { value, path, depth } = stack.pop()!;
    if (value === null || typeof value === 'boolean') continue;
    if (typeof value === 'string') {
      const problem = textProblem(value);
      if (problem) problems.push({ path, message: problem });
      continue;
    }
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) problems.push({ path, message: 'must be a finite number' });
      continue;
    }
    if (typeof value !== 'object') {
      problems.push({ path, message: 'must be JSON' });
      continue;
    }
    if (depth + 1 > maxDepth) {
      if (!tooDeep) problems.push({ path: [], message: `nests deeper than ${maxDepth} levels` });
      tooDeep = true;
      continue;
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: [...path, i], depth: depth + 1 });
      continue;
    }
    const entries = Object.entries(value as Record<string, unknown>);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i];
      const problem = textProblem(key);
      // A bad key is named by its parent: the key itself cannot be part of a field name.
      if (problem) problems.push({ path, message: `a key ${problem}` });
      else stack.push({ value: child, path: [...path, key], depth: depth + 1 });
    }
  }
  return problems;
}

export interface JsonObjectOptions {
  /** Most bytes as JSON: beyond, 413 naming the field. */
  maxBytes: number;
  maxDepth?: number;
}

/**
 * A JSON object (`metadata`, `state`, an activity's `metadata`): at most `maxDepth` levels,
 * at most `maxBytes` as JSON, and only keys, strings and numbers that jsonb can store.
 */
export function jsonObject(options: JsonObjectOptions) {
  const maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
  return z
    .record(z.string(), z.unknown())
    .superRefine((value, ctx) => {
      const problems = jsonProblems(value, maxDepth);
      for (const p of problems) ctx.addIssue({ code: 'custom', message: p.message, path: p.path, input: value });
      // Measured only once the walk found it sound: stringifying a value nested without bound could overflow.
      if (problems.length === 0 && jsonByteLength(value) > options.maxBytes) {
        ctx.addIssue({
          code: 'custom',
          input: value,
          ...tooLarge(`larger than ${describeBytes(options.maxBytes)} as JSON`),
        });
      }
    })
    .meta({ 'x-max-depth': maxDepth, 'x-max-bytes': options.maxBytes });
}

const jsonByteLength = (value: unknown) => Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');

// ---------------------------------------------------------------------------------------
// Numbers

export const INT32_MIN = -(2 ** 31);
export const INT32_MAX = 2 ** 31 - 1;

/** An integer within [min, max] (JSON numbers; `1e400` is Infinity and refused). */
export function int(options: { min: number; max: number }) {
  return z.number().int('must be an integer').min(options.min).max(options.max);
}

/** An integer that fits PostgreSQL's `integer` (and `int4` comparisons), within [min, max]. */
export function int32(options: { min?: number; max?: number } = {}) {
  return int({
    min: Math.max(options.min ?? INT32_MIN, INT32_MIN),
    max: Math.min(options.max ?? INT32_MAX, INT32_MAX),
  });
}

/** An integer as a query string carries it ("50"), within [min, max]. */
export function queryInt(options: { min: number; max: number }) {
  return z.coerce.number().int('must be an integer').min(options.min).max(options.max);
}

/** A finite number within [min, max]. */
export function finite(options: { min: number; max: number }) {
  return z.number().min(options.min).max(options.max);
}

// ---------------------------------------------------------------------------------------
// Times

/** The instants a timestamp may name: years 0001–9999 in UTC, which PostgreSQL and JavaScript both carry. */
export const MIN_INSTANT_MS = Date.parse('0001-01-01T00:00:00.000Z');
export const MAX_INSTANT_MS = Date.parse('9999-12-31T23:59:59.999Z');

/** An RFC 3339 timestamp with a zone (`Z` or `±hh:mm`), naming a real date between years 0001 and 9999 UTC. */
export function dateTime() {
  return z.iso
    .datetime({ offset: true, error: 'must be an RFC 3339 timestamp with a time zone' })
    .max(64)
    .refine((value) => {
      const ms = Date.parse(value);
      return ms >= MIN_INSTANT_MS && ms <= MAX_INSTANT_MS;
    }, 'must lie between the years 0001 and 9999 (UTC)');
}

/** The areas of IANA time zone names (`Area/Location`). */
const TIME_ZONE_AREAS = new Set([
  'Africa',
  'America',
  'Antarctica',
  'Arctic',
  'Asia',
  'Atlantic',
  'Australia',
  'Europe',
  'Indian',
  'Pacific',
  'Etc',
]);
let canonicalZones: Set<string> | undefined;

/**
 * Whether `tz` is an IANA time zone that this runtime and PostgreSQL both know: a canonical
 * name (`Intl.supportedValuesOf('timeZone')`, plus `UTC`), or an `Area/Location` alias the
 * runtime resolves (`Asia/Kolkata`, `Europe/Kyiv`). Offsets (`+05:00`, which PostgreSQL reads
 * with the opposite sign) and the runtime's other legacy ids (`AET`, `US/Pacific-New`, unknown
 * to PostgreSQL) are refused.
 */
export function isTimeZone(tz: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(tz)) return false;
  canonicalZones ??= new Set([...Intl.supportedValuesOf('timeZone'), 'UTC']);
  if (canonicalZones.has(tz)) return true;
  if (!TIME_ZONE_AREAS.has(tz.split('/')[0]) || !tz.includes('/')) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** An IANA time zone name ("UTC", "Asia/Shanghai", "America/New_York"). */
export function timeZone() {
  return z.string().max(64).refine(isTimeZone, 'an IANA time zone name such as UTC or Asia/Shanghai');
}

// ---------------------------------------------------------------------------------------
// Lists

/** Most ids in one list a service is told or asked about (a session's groups). */
export const MAX_ID_LIST = 10_000;

/** A list of at most `max` items (and at least `min`). */
export function list<T extends z.ZodType>(item: T, options: { max: number; min?: number }) {
  const schema = z.array(item).max(options.max);
  return options.min === undefined ? schema : schema.min(options.min);
}

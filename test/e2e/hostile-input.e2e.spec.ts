import fc from 'fast-check';
import { randomBytes, randomUUID } from 'node:crypto';
import { MAX_WIRE_JSON_DEPTH } from '@parley/contracts';
import { cleanupRun, runId, startStack, stopStack, type Stack } from '../support/stack';

/**
 * Hostile input never gets a 5xx (API.md, Conventions). This suite reads the OpenAPI document
 * of a running stack and, for every route and every field of its path, query and body (nested
 * fields included), sends hostile values while keeping the other fields valid: NUL, unpaired
 * surrogates, bad UTF-8, out-of-range and non-finite numbers (`1e400` as raw JSON text),
 * impossible dates, JSON nested 33+ levels, very long strings and lists, wrong types, missing
 * fields. Values are drawn by fast-check from a fixed seed, so a run repeats exactly.
 *
 * Every request is made as a caller with rights on real fixtures (the route's ids are of
 * resources that caller may change), so validation is reached rather than a 404. Then:
 * - nothing ever answers 5xx, whether the value is allowed or not;
 * - a value the document or API.md forbids answers 400 or 413 whose `errors[]` names the field
 *   (`path.id`, `query.q`, `metadata.a.b`);
 * - every route and every field of the document was reached (the suite fails otherwise);
 * - an edited cursor, or one another list made, answers 400 naming the cursor;
 * - routes outside the document (docs, metrics, health, console) never answer 5xx either.
 *
 * It runs its own stack: a rate limit high enough for a few thousand requests, and failed
 * logins that do not throttle the other suites.
 */

const SEED = 20261130;
/** Draws per (field, fast-check generator). */
const RUNS = 2;
const CONCURRENCY = 6;
const ADMIN_PASSWORD = randomBytes(12).toString('base64url');
const PASSWORD = 'correct-horse-battery';

// ---------------------------------------------------------------------------------------
// The document

type JsonType = 'string' | 'integer' | 'number' | 'boolean' | 'null' | 'array' | 'object';
interface JsonSchema {
  type?: JsonType;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  $ref?: string;
  'x-max-bytes'?: number;
  'x-max-depth'?: number;
}

interface Route {
  method: string;
  /** `/api/v1/sessions/{id}` */
  path: string;
  /** `GET /api/v1/sessions/{id}` */
  key: string;
  params: { name: string; in: 'path' | 'query'; required: boolean; schema: JsonSchema }[];
  body?: JsonSchema;
}

type Where = 'path' | 'query' | 'body';

interface Field {
  route: Route;
  in: Where;
  /** Its place: `['messages', 0, 'content']`; a query or path parameter is one segment. */
  segments: (string | number)[];
  schema: JsonSchema;
  required: boolean;
  /** Which branch of a body that is one of several shapes (`anyOf`). */
  branch: number;
  /** How problems name it: `path.id`, `query.q`, `messages.0.content`. */
  expected: string;
  key: string;
}

function routesOf(document: { paths: Record<string, Record<string, any>> }): Route[] {
  return Object.entries(document.paths).flatMap(([path, operations]) =>
    Object.entries(operations).map(([method, op]) => ({
      method: method.toUpperCase(),
      path,
      key: `${method.toUpperCase()} ${path}`,
      params: (op.parameters ?? []) as Route['params'],
      body: op.requestBody?.content?.['application/json']?.schema as JsonSchema | undefined,
    })),
  );
}

const branchesOf = (schema: JsonSchema) => schema.anyOf ?? [schema];
/** A schema without its `null` alternative. */
function nonNull(schema: JsonSchema): JsonSchema {
  const options = schema.anyOf?.filter((s) => s.type !== 'null');
  return options?.length === 1 ? options[0] : schema;
}
const hasProperties = (s: JsonSchema) => s.type === 'object' && !!s.properties;
/** A free JSON object (`metadata`, `state`): no declared properties. */
const isJsonObject = (s: JsonSchema) => s.type === 'object' && !s.properties;

/** Every field of a route: its parameters, and every property of its body however nested. */
function fieldsOf(route: Route): Field[] {
  const fields: Field[] = route.params.map((p) => ({
    route,
    in: p.in,
    segments: [p.name],
    schema: p.schema,
    required: p.required,
    branch: 0,
    expected: `${p.in}.${p.name}`,
    key: `${route.key} ${p.in}.${p.name}`,
  }));
  const walk = (schema: JsonSchema, segments: (string | number)[], required: boolean, branch: number) => {
    if (schema.$ref) throw new Error(`${route.key}: teach this suite about $ref (${schema.$ref})`);
    if (segments.length > 0) {
      const expected = segments.join('.');
      fields.push({
        route,
        in: 'body',
        segments,
        schema,
        required,
        branch,
        expected,
        key: `${route.key} body[${branch}] ${expected}`,
      });
    }
    const s = nonNull(schema);
    if (hasProperties(s)) {
      for (const [name, child] of Object.entries(s.properties!)) {
        walk(child, [...segments, name], !!s.required?.includes(name), branch);
      }
    } else if (s.type === 'array' && s.items) {
      walk(s.items, [...segments, 0], true, branch);
    }
  };
  if (route.body) branchesOf(route.body).forEach((b, i) => walk(b, [], true, i));
  return fields;
}

// ---------------------------------------------------------------------------------------
// What the document allows: a value it forbids must be refused with the field named.

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

const depthOf = (value: unknown): number =>
  value !== null && typeof value === 'object' ? 1 + Math.max(0, ...Object.values(value as object).map(depthOf)) : 0;

/** Whether the document's schema forbids `value` (a query value arrives as text and is read as a number where one is expected). */
function forbids(schema: JsonSchema, value: unknown, inUrl = false): boolean {
  if (schema.anyOf) return schema.anyOf.every((s) => forbids(s, value, inUrl));
  if ('const' in schema) return value !== schema.const;
  if (schema.enum) return !schema.enum.includes(value);
  if (inUrl && (schema.type === 'integer' || schema.type === 'number')) {
    if (typeof value !== 'string') return true;
    value = Number(value);
  }
  const type = typeOf(value);
  switch (schema.type) {
    case 'string': {
      if (typeof value !== 'string') return true;
      if (schema.minLength !== undefined && value.length < schema.minLength) return true;
      if (schema.maxLength !== undefined && value.length > schema.maxLength) return true;
      if (schema.pattern !== undefined && !new RegExp(schema.pattern).test(value)) return true;
      return schema['x-max-bytes'] !== undefined && Buffer.byteLength(value) > schema['x-max-bytes'];
    }
    case 'integer':
    case 'number': {
      if (type !== 'integer' && (schema.type === 'integer' || type !== 'number')) return true;
      const n = value as number;
      if (!Number.isFinite(n) || (schema.type === 'integer' && !Number.isSafeInteger(n))) return true;
      if (schema.minimum !== undefined && n < schema.minimum) return true;
      if (schema.maximum !== undefined && n > schema.maximum) return true;
      if (schema.exclusiveMinimum !== undefined && n <= schema.exclusiveMinimum) return true;
      return schema.exclusiveMaximum !== undefined && n >= schema.exclusiveMaximum;
    }
    case 'boolean':
      return type !== 'boolean';
    case 'null':
      return value !== null;
    case 'array': {
      if (!Array.isArray(value)) return true;
      if (schema.minItems !== undefined && value.length < schema.minItems) return true;
      if (schema.maxItems !== undefined && value.length > schema.maxItems) return true;
      if (schema['x-max-bytes'] !== undefined && Buffer.byteLength(JSON.stringify(value)) > schema['x-max-bytes']) {
        return true;
      }
      return !!schema.items && value.some((item) => forbids(schema.items!, item));
    }
    case 'object': {
      if (type !== 'object') return true;
      const object = value as Record<string, unknown>;
      if (schema['x-max-depth'] !== undefined && depthOf(object) > schema['x-max-depth']) return true;
      if (schema['x-max-bytes'] !== undefined && Buffer.byteLength(JSON.stringify(object)) > schema['x-max-bytes']) {
        return true;
      }
      if (schema.required?.some((k) => !(k in object))) return true;
      const props = schema.properties ?? {};
      if (schema.additionalProperties === false && Object.keys(object).some((k) => !(k in props))) return true;
      return Object.entries(object).some(([k, v]) => k in props && forbids(props[k], v));
    }
    case undefined:
      return false;
  }
}

// ---------------------------------------------------------------------------------------
// Hostile values, per JSON-schema type and place. A value is `refused` when API.md forbids it
// whatever the schema says (NUL, surrogates, 1e400, depth, impossible dates); otherwise the
// document decides (`forbids`), and a value it allows must only not answer 5xx.

type Verdict = 'refused' | 'rejected' | 'survives';
interface Hostile {
  label: string;
  /** The value, or `RAW` with `raw` (JSON text such as 1e400, or URL text such as %ED%A0%80). */
  value?: unknown;
  raw?: string;
  /** Leave the field out. */
  omit?: boolean;
  /** Query or path: the parameter given twice. */
  twice?: boolean;
  /** Other query parameters set beside it (`to` before `from`). */
  beside?: Record<string, string>;
  /** Forced verdict; otherwise the document decides. */
  verdict?: Verdict;
}
interface Kind {
  label: string;
  /** Explicit values, each tried once. */
  values?: Hostile[];
  /** Values drawn by fast-check, RUNS of them. */
  arb?: fc.Arbitrary<Hostile>;
}

const RAW = '\u0001raw\u0001';
const NUL = '\u0000';
const splice = (text: string, at: number, inserted: string) => {
  const i = at % (text.length + 1);
  return text.slice(0, i) + inserted + text.slice(i);
};
const loneSurrogate = fc
  .oneof(fc.integer({ min: 0xd800, max: 0xdbff }), fc.integer({ min: 0xdc00, max: 0xdfff }))
  .map((c) => String.fromCharCode(c));
/** Text that is storable but unusual: it must never cause a 5xx. */
const ODD_TEXT = [
  "' or 1=1; --",
  '%_\\%',
  '😀𝕏 中文 عربى',
  '\u202eevil\u202c',
  '\ufeff\uffff\ufffe',
  'a\u0001\u001f\u007fb',
  '   ',
  '$where',
];
/** Timestamps that must be refused: no such day, no zone, beyond years 0001–9999 in UTC. */
const BAD_TIMES = [
  '2026-02-30T00:00:00Z',
  '2023-02-29T12:00:00Z',
  '2026-11-23T10:00:00',
  '2026-11-23T24:00:00Z',
  '0000-01-01T00:00:00Z',
  '0001-01-01T00:00:00+00:01',
  '9999-12-31T23:59:59-00:01',
  '+010000-01-01T00:00:00Z',
  'tomorrow',
];
const EDGE_TIMES = ['0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z', '1970-01-01T00:00:00Z'];
/** Field-specific values that must be refused (`from`/`to` and time zones). */
const NAMED: Record<string, Hostile[]> = {
  // Grouped by hour and day, so that the zone reaches the SQL.
  tz: ['AET', 'US/Pacific-New', '+05:00', 'Mars/Olympus', 'utc '].map((v) => ({
    label: `tz ${v}`,
    value: v,
    beside: { group_by: 'hour,day' },
    verdict: 'refused',
  })),
  group_by: ['bot,bot', 'nope', 'bot,', ','].map((v) => ({ label: `group_by ${v}`, value: v, verdict: 'refused' })),
  from: [
    {
      label: 'from after to',
      value: '2026-11-23T10:00:00Z',
      beside: { to: '2026-11-22T10:00:00Z' },
      verdict: 'refused',
    },
  ],
  created_from: [
    {
      label: 'created_from after created_to',
      value: '2026-11-23T10:00:00Z',
      beside: { created_to: '2026-11-22T10:00:00Z' },
      verdict: 'refused',
    },
  ],
};

const wrongTypes = (...values: unknown[]): Kind => ({
  label: 'wrong type',
  values: values.map((v) => ({ label: `wrong type ${JSON.stringify(v)}`, value: v })),
});
const nestedObject = (depth: number, leaf: unknown): unknown =>
  depth <= 0 ? leaf : { k: nestedObject(depth - 1, leaf) };

/** The JSON types a schema takes (a union may take several: a decimal is a number or a string). */
function typesOf(schema: JsonSchema): Set<string> {
  return new Set(branchesOf(nonNull(schema)).map((b) => b.type ?? (b.enum ? 'string' : typeof b.const)));
}

/** The hostile generators of a body field, by the JSON-schema types it takes. */
function bodyKinds(field: Field, valid: unknown): Kind[] {
  const s = nonNull(field.schema);
  const types = typesOf(s);
  const branches = branchesOf(s);
  const text = typeof valid === 'string' && valid.length > 0 ? valid : 'abc';
  const isItem = typeof field.segments.at(-1) === 'number';
  // Without a required field of a body that has several shapes, the body may read as another shape: any 4xx.
  const ambiguous = field.segments.length === 1 && branchesOf(field.route.body!).length > 1;
  const kinds: Kind[] = [{ label: 'null', values: [{ label: 'null', value: null }] }];
  if (!isItem) {
    const verdict = !field.required ? 'survives' : ambiguous ? 'rejected' : 'refused';
    kinds.push({ label: 'missing', values: [{ label: 'missing', omit: true, verdict }] });
  }
  if (types.has('string')) {
    const max = Math.max(...branches.map((b) => b.maxLength ?? (b.enum || b.const ? 100 : 1000)));
    kinds.push(
      { label: 'NUL', arb: fc.nat().map((at) => ({ label: 'NUL', value: splice(text, at, NUL), verdict: 'refused' })) },
      {
        label: 'unpaired surrogate',
        arb: fc
          .tuple(fc.nat(), loneSurrogate)
          .map(([at, c]) => ({ label: 'surrogate', value: splice(text, at, c), verdict: 'refused' })),
      },
      {
        label: 'too long',
        arb: fc.integer({ min: 1, max: 50 }).map((n) => ({ label: `length ${max + n}`, value: 'a'.repeat(max + n) })),
      },
      {
        label: 'very long',
        arb: fc.integer({ min: 100_000, max: 200_000 }).map((n) => ({ label: `length ${n}`, value: 'x'.repeat(n) })),
      },
      { label: 'odd text', values: ODD_TEXT.map((t) => ({ label: `odd ${JSON.stringify(t)}`, value: t })) },
      wrongTypes(12345, true, {}, [], ['a'], nestedObject(40, 'a')),
    );
    if (branches.some((b) => b.format === 'date-time')) {
      kinds.push(
        { label: 'bad time', values: BAD_TIMES.map((v) => ({ label: v, value: v, verdict: 'refused' as const })) },
        { label: 'edge time', values: EDGE_TIMES.map((v) => ({ label: v, value: v })) },
      );
    }
    if (branches.some((b) => b.format === 'uuid')) {
      kinds.push({ label: 'unknown id', arb: fc.uuid().map((v) => ({ label: 'unknown id', value: v })) });
    }
  }
  if (types.has('integer') || types.has('number')) {
    const bound = (key: 'maximum' | 'minimum', fallback: number) =>
      branches.find((b) => b[key] !== undefined)?.[key] ?? fallback;
    const max = bound('maximum', Number.MAX_SAFE_INTEGER);
    const min = bound('minimum', Number.MIN_SAFE_INTEGER);
    kinds.push(
      {
        label: 'above the range',
        arb: fc
          .oneof(
            fc.integer({ min: 1, max: 10 ** 6 }).map((n) => max + n),
            fc.constantFrom(3_000_000_000, 2 ** 53 + 2, 1e300),
          )
          .map((v) => ({ label: `${v}`, value: v })),
      },
      {
        label: 'below the range',
        arb: fc
          .oneof(
            fc.integer({ min: 1, max: 10 ** 6 }).map((n) => min - n),
            fc.constantFrom(-1, -3_000_000_000, -1e300),
          )
          .map((v) => ({ label: `${v}`, value: v })),
      },
      {
        label: 'not finite',
        values: ['1e400', '-1e400'].map((raw) => ({ label: raw, value: RAW, raw, verdict: 'refused' as const })),
      },
      { label: 'fraction', values: [{ label: 'fraction', value: Math.max(min, 0) + 0.5 }] },
      wrongTypes('12', true, {}, [1]),
    );
  }
  if (types.has('boolean')) kinds.push(wrongTypes('true', 1, 0, 'false', {}));
  if (isJsonObject(s)) {
    const maxDepth = s['x-max-depth'] ?? 32;
    const maxBytes = s['x-max-bytes'] ?? 64 * 1024;
    const buried = (leaf: unknown) => fc.integer({ min: 0, max: 5 }).map((depth) => nestedObject(depth, leaf));
    kinds.push(
      {
        label: 'too deep',
        arb: fc.integer({ min: maxDepth + 1, max: maxDepth + 40 }).map((depth) => ({
          label: `${depth} levels`,
          value: nestedObject(depth - 1, 1),
          verdict: 'refused',
        })),
      },
      {
        label: 'NUL value',
        arb: buried(`a${NUL}b`).map((value) => ({ label: 'NUL value', value, verdict: 'refused' })),
      },
      {
        label: 'NUL key',
        arb: buried({ [`k${NUL}`]: 1 }).map((value) => ({ label: 'NUL key', value, verdict: 'refused' })),
      },
      {
        label: 'unpaired surrogate',
        arb: loneSurrogate
          .chain((c) => buried(`a${c}`))
          .map((value) => ({ label: 'surrogate', value, verdict: 'refused' })),
      },
      {
        label: 'not finite',
        arb: fc.integer({ min: 0, max: 5 }).map((depth) => ({
          label: `1e400 at depth ${depth}`,
          value: RAW,
          raw: `${'{"k":'.repeat(depth)}{"n":1e400}${'}'.repeat(depth)}`,
          verdict: 'refused',
        })),
      },
      { label: 'too large', values: [{ label: 'too large', value: { k: 'x'.repeat(maxBytes) } }] },
      {
        label: 'allowed',
        values: [
          { label: `${maxDepth} levels`, value: nestedObject(maxDepth - 1, ODD_TEXT), verdict: 'survives' },
          { label: 'odd keys', value: Object.fromEntries(ODD_TEXT.map((t) => [t, t])), verdict: 'survives' },
          {
            label: 'prototype keys',
            value: RAW,
            raw: '{"__proto__":{"x":1},"constructor":{"prototype":{"x":1}}}',
            verdict: 'survives',
          },
        ],
      },
      wrongTypes([], 'x', 1, true),
    );
  } else if (hasProperties(s)) {
    kinds.push(wrongTypes([], 'x', 1, true));
    if (s.additionalProperties === false && typeof valid === 'object' && valid !== null) {
      kinds.push({ label: 'unknown field', values: [{ label: 'unknown field', value: { ...valid, zz_unknown: 1 } }] });
    }
  }
  if (types.has('array')) {
    const max = s.maxItems ?? 1000;
    const item = Array.isArray(valid) && valid.length > 0 ? valid[0] : validValue(field.route, '', s.items ?? {});
    kinds.push(
      {
        label: 'too many',
        values: [{ label: `${max + 1} items`, value: Array.from({ length: max + 1 }, () => item) }],
      },
      { label: 'empty', values: [{ label: 'empty', value: [] }] },
      wrongTypes({}, 'x', 1),
    );
  }
  return kinds;
}

/** The hostile generators of a query or path parameter (URL text). */
function urlKinds(field: Field, valid: string): Kind[] {
  const s = nonNull(field.schema);
  const text = valid.length > 0 ? valid : 'abc';
  const url = (label: string, value: string, verdict?: Verdict): Hostile => ({ label, value, verdict });
  const kinds: Kind[] = [
    { label: 'NUL', arb: fc.nat().map((at) => url('NUL', splice(text, at, NUL), 'refused')) },
    {
      label: 'bad UTF-8',
      values: ['%ED%A0%80', '%FF%FE', '%C0%80'].map((raw) => ({
        label: raw,
        value: RAW,
        raw: `${encodeURIComponent(text)}${raw}`,
        verdict: 'survives' as const,
      })),
    },
  ];
  if (field.in === 'path') {
    return [
      ...kinds,
      {
        label: 'not an id',
        arb: fc
          .string({ unit: fc.constantFrom(...'abcdef0123456789-xyz'.split('')), minLength: 1, maxLength: 60 })
          .map((v) => url(v, v)),
      },
      { label: 'unknown id', arb: fc.uuid().map((v) => url('unknown id', v)) },
      { label: 'odd text', values: ODD_TEXT.filter((t) => t.trim()).map((t) => url(`odd ${JSON.stringify(t)}`, t)) },
      // Longer than the router takes for a parameter: refused before any handler (414).
      { label: 'very long', values: [{ label: 'length 300', value: 'a'.repeat(300), verdict: 'rejected' }] },
    ];
  }
  kinds.push(
    { label: 'twice', values: [{ label: 'twice', value: text, twice: true, verdict: 'refused' }] },
    { label: 'empty', values: [url('empty', '')] },
    { label: 'odd text', values: ODD_TEXT.map((t) => url(`odd ${JSON.stringify(t)}`, t)) },
    ...(NAMED[String(field.segments[0])] ? [{ label: 'named', values: NAMED[String(field.segments[0])] }] : []),
  );
  if (s.maxLength !== undefined && s.maxLength < 8000) {
    kinds.push({
      label: 'too long',
      arb: fc.integer({ min: 1, max: 50 }).map((n) => url(`length ${s.maxLength! + n}`, 'a'.repeat(s.maxLength! + n))),
    });
  }
  if (s.type === 'integer' || s.type === 'number') {
    kinds.push(
      {
        label: 'out of range',
        arb: fc
          .oneof(fc.integer({ min: -(10 ** 12), max: -1 }), fc.integer({ min: 2 ** 31, max: 2 ** 52 }))
          .map((n) => url(`${n}`, `${n}`)),
      },
      {
        label: 'not a number',
        values: ['1e400', '-1e400', 'abc', '1.5', '0x1F', '99999999999999999999', 'NaN', 'Infinity'].map((v) =>
          url(v, v),
        ),
      },
    );
  }
  if (s.format === 'date-time') {
    kinds.push(
      { label: 'bad time', values: BAD_TIMES.map((v) => url(v, v, 'refused')) },
      { label: 'edge time', values: EDGE_TIMES.map((v) => url(v, v)) },
    );
  }
  if (s.format === 'uuid') kinds.push({ label: 'unknown id', arb: fc.uuid().map((v) => url('unknown id', v)) });
  return kinds;
}

// ---------------------------------------------------------------------------------------
// The stack, its callers and fixtures

interface Caller {
  name: 'user' | 'admin' | 'bot';
  headers: Record<string, string>;
}
interface Answer {
  status: number;
  body: any;
  text: string;
}

let stack: Stack;
let base: string;

async function send(
  method: string,
  path: string,
  caller: Caller | undefined,
  options: { query?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await fetch(`${base}${path}${options.query ? `?${options.query}` : ''}`, {
    method,
    headers: {
      ...caller?.headers,
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    body: options.body,
    signal: AbortSignal.timeout(60_000),
  });
  // A live stream never ends: its status is the answer.
  if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
    await res.body?.cancel();
    return { status: res.status, body: undefined, text: '(event stream)' };
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text };
}

async function json(
  method: string,
  path: string,
  caller: Caller | undefined,
  body?: unknown,
  expected = [200, 201, 204],
): Promise<any> {
  const res = await send(method, path, caller, { body: body === undefined ? undefined : JSON.stringify(body) });
  if (!expected.includes(res.status))
    throw new Error(`fixture ${method} ${path}: ${res.status} ${res.text.slice(0, 500)}`);
  return res.body;
}

interface World {
  user: Caller & { id: string; username: string; refreshToken: string };
  admin: Caller;
  bot: Caller;
  /** Ids by what they are; `doomed…` are deleted by the DELETE routes at the end. */
  ids: Record<string, string>;
}

/** Creates what the routes act on: users, a group, roles, bots and keys, sessions and messages. */
async function buildWorld(): Promise<World> {
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const admin: Caller = {
    name: 'admin',
    headers: bearer(
      (await json('POST', '/api/v1/auth/login', undefined, { username: 'admin', password: ADMIN_PASSWORD }))
        .access_token,
    ),
  };
  const newUser = (label: string) =>
    json('POST', '/api/v1/users', admin, { username: `${label}-${randomUUID().slice(0, 8)}`, password: PASSWORD });
  const [owner, victim, doomedUser, member] = [
    await newUser('owner'),
    await newUser('victim'),
    await newUser('doomed'),
    await newUser('member'),
  ];
  const login = await json('POST', '/api/v1/auth/login', undefined, { username: owner.username, password: PASSWORD });
  const user = {
    name: 'user' as const,
    headers: bearer(login.access_token),
    id: owner.id,
    username: owner.username,
    refreshToken: login.refresh_token,
  };

  const group = await json('POST', '/api/v1/groups', admin, { name: `group-${randomUUID()}` });
  const doomedGroup = await json('POST', '/api/v1/groups', admin, { name: `doomed-${randomUUID()}` });
  const role = await json('POST', '/api/v1/roles', admin, { name: `role-${randomUUID()}` });
  await json('POST', '/api/v1/roles', admin, { name: `role-${randomUUID()}` });
  // Four members: two stay after the DELETE routes, so the list still has a next page.
  for (const id of [victim.id, doomedUser.id, member.id, owner.id]) {
    await json('PUT', `/api/v1/groups/${group.id}/members/${id}`, admin, {});
  }
  await json('PUT', `/api/v1/users/${victim.id}/roles/${role.id}`, admin);

  const bot = await json('POST', '/api/v1/bots', user, { name: 'hostile-bot' });
  const doomedBot = await json('POST', '/api/v1/bots', user, { name: 'doomed-bot' });
  const doomedKey = await json('POST', `/api/v1/bots/${bot.id}/keys`, user, {});
  const session = await json('POST', '/api/v1/sessions', user, { title: 'hello', bot_id: bot.id });
  const doomedSession = await json('POST', '/api/v1/sessions', user, { title: 'doomed' });
  const message = await json('POST', `/api/v1/sessions/${session.id}/messages`, user, {
    role: 'user',
    content: 'hello world',
  });
  await json('POST', `/api/v1/sessions/${session.id}/messages`, user, { role: 'assistant', content: 'hello again' });
  const now = Date.now();
  await json('PUT', '/api/v1/usage/prices', admin, {
    prices: ['gpt-4o', 'gpt-4o-mini'].map((model) => ({
      provider: 'openai',
      model,
      input_per_million: '2.5',
      output_per_million: '10',
      currency: 'USD',
    })),
  });
  const botCaller: Caller = { name: 'bot', headers: { 'x-api-key': bot.api_key } };
  await json(
    'POST',
    '/api/v1/usage/events',
    botCaller,
    {
      events: [1, 2].map((i) => ({
        request_id: `fixture-${i}`,
        bot_id: bot.id,
        status: 'completed',
        provider: 'openai',
        model: 'gpt-4o',
        input_tokens: 10,
        output_tokens: 5,
        started_at: new Date(now - i * 60_000).toISOString(),
      })),
    },
    [202],
  );
  await json(
    'POST',
    `/api/v1/bots/${bot.id}/activity`,
    botCaller,
    {
      events: [1, 2].map((i) => ({
        event_id: `fixture-${i}`,
        bot_id: bot.id,
        event_type: 'tool_call',
        occurred_at: new Date(now - i * 60_000).toISOString(),
      })),
    },
    [202],
  );
  return {
    user,
    admin,
    bot: botCaller,
    ids: {
      users: victim.id,
      'doomed users': doomedUser.id,
      groups: group.id,
      'doomed groups': doomedGroup.id,
      roles: role.id,
      bots: bot.id,
      'doomed bots': doomedBot.id,
      keys: doomedKey.id,
      sessions: session.id,
      'doomed sessions': doomedSession.id,
      messages: message.id,
      owner: owner.id,
      victim: victim.id,
    },
  };
}

// ---------------------------------------------------------------------------------------
// Valid values: what the other fields hold while one is hostile.

let world: World;
let serial = 0;
const unique = (label: string) => `${label}-${Date.now().toString(36)}-${serial++}`;

/** The id a path parameter takes: the resource named by the segment before it (a doomed one for DELETE). */
function pathId(route: Route, name: string): string {
  const segments = route.path.split('/');
  const at = segments.indexOf(`{${name}}`);
  const noun =
    name === 'user_id' ? 'victim' : name === 'role_id' ? 'roles' : name === 'key_id' ? 'keys' : segments[at - 1];
  const last = at === segments.length - 1;
  return world.ids[route.method === 'DELETE' && last && world.ids[`doomed ${noun}`] ? `doomed ${noun}` : noun];
}

/** Valid values by field name, where the schema alone does not tell one (ids of fixtures, patterns, times). */
function namedValue(route: Route, name: string): unknown {
  const now = Date.now();
  const byRoute: Record<string, Record<string, unknown>> = {
    'POST /api/v1/auth/login': { username: world.user.username, password: PASSWORD },
    'POST /api/v1/auth/refresh': { refresh_token: world.user.refreshToken },
    'PUT /api/v1/me/password': { current_password: PASSWORD, new_password: PASSWORD },
  };
  if (byRoute[route.key] && name in byRoute[route.key]) return byRoute[route.key][name];
  const values: Record<string, () => unknown> = {
    bot_id: () => world.ids.bots,
    session_id: () => world.ids.sessions,
    user_id: () => world.ids.owner,
    resource_id: () => world.ids.bots,
    request_id: () => unique('r'),
    event_id: () => unique('e'),
    event_type: () => 'tool_call',
    username: () => unique('u'),
    password: () => PASSWORD,
    name: () => unique('n'),
    email: () => `${unique('e')}@example.com`,
    currency: () => 'USD',
    provider: () => 'openai',
    model: () => 'gpt-4o',
    input_per_million: () => '2.5',
    output_per_million: () => '10',
    max_cost: () => '5',
    started_at: () => new Date(now - 60_000).toISOString(),
    completed_at: () => new Date(now).toISOString(),
    occurred_at: () => new Date(now).toISOString(),
    expires_at: () => new Date(now + 86_400_000).toISOString(),
    effective_from: () => new Date(now).toISOString(),
    from: () => new Date(now - 3_600_000).toISOString(),
    to: () => new Date(now).toISOString(),
    created_from: () => new Date(now - 3_600_000).toISOString(),
    created_to: () => new Date(now).toISOString(),
    content: () => 'hello world',
    q: () => 'hello',
    tz: () => 'UTC',
    group_by: () => 'day',
    refresh_token: () => 'not-a-refresh-token',
  };
  return values[name]?.();
}

/** A valid value for a schema, fixture-aware by field name. */
function validValue(route: Route, name: string, schema: JsonSchema): unknown {
  const named = namedValue(route, name);
  if (named !== undefined) return named;
  const s = nonNull(schema);
  if ('const' in s) return s.const;
  if (s.enum) return s.enum[0];
  if (s.anyOf) return validValue(route, name, s.anyOf[0]);
  switch (s.type) {
    case 'string':
      if (s.format === 'uuid') return randomUUID();
      if (s.format === 'date-time') return new Date().toISOString();
      return 'x'.repeat(Math.max(s.minLength ?? 1, 3));
    case 'integer':
    case 'number':
      return Math.min(Math.max(1, s.minimum ?? 1), s.maximum ?? 1);
    case 'boolean':
      return false;
    case 'array':
      return (s.minItems ?? 0) > 0 && s.items ? [validValue(route, name, s.items)] : [];
    case 'object':
      return validObject(route, s);
    case 'null':
      return null;
    case undefined:
      return 'x';
  }
}

/** An object with its required properties valid (or its first one, when none is required: an update). */
function validObject(route: Route, schema: JsonSchema): Record<string, unknown> {
  const props = Object.entries(schema.properties ?? {});
  const chosen = props.filter(([k]) => schema.required?.includes(k));
  const picked = chosen.length > 0 || props.length === 0 || route.method === 'POST' ? chosen : props.slice(0, 1);
  return Object.fromEntries(picked.map(([k, s]) => [k, validValue(route, k, s)]));
}

/** A valid body of the given shape with `value` at `segments` (containers on the way made valid). */
function bodyWith(route: Route, branch: number, segments: (string | number)[], hostile: Hostile): unknown {
  const root = branchesOf(route.body!)[branch];
  const body = validValue(route, '', root) as Record<string, unknown>;
  let container: any = body;
  let schema = nonNull(root);
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    const child = typeof segment === 'number' ? schema.items! : schema.properties![segment];
    if (last) {
      if (hostile.omit) {
        if (Array.isArray(container)) container.splice(segment as number, 1);
        else delete container[segment];
      } else container[segment] = hostile.value;
      return;
    }
    if (container[segment] === undefined || container[segment] === null) {
      container[segment] = validValue(route, String(segment), child);
    }
    if (Array.isArray(container[segment]) && container[segment].length === 0) {
      container[segment].push(validValue(route, String(segments[i + 1]), nonNull(child).items!));
    }
    container = container[segment];
    schema = nonNull(child);
  });
  return body;
}

// ---------------------------------------------------------------------------------------
// One request for one field and one hostile value

interface Plan {
  caller: Caller;
}
const plans = new Map<string, Plan>();
const reachedRoutes = new Set<string>();
const reachedFields = new Set<string>();
const failures: string[] = [];

function requestFor(field: Field | undefined, route: Route, hostile?: Hostile) {
  let depth = 0;
  let path = route.path;
  const query: string[] = [];
  for (const p of route.params) {
    const mine = field?.in === p.in && field.segments[0] === p.name && hostile;
    if (p.in === 'path') {
      const text = mine
        ? hostile.value === RAW
          ? hostile.raw!
          : encodeURIComponent(String(hostile.value))
        : pathId(route, p.name);
      path = path.replace(`{${p.name}}`, text);
    } else if (mine) {
      if (hostile.omit) continue;
      const text = hostile.value === RAW ? hostile.raw! : encodeURIComponent(String(hostile.value));
      query.push(`${p.name}=${text}`);
      if (hostile.twice) query.push(`${p.name}=${text}`);
      for (const [k, v] of Object.entries(hostile.beside ?? {})) query.push(`${k}=${encodeURIComponent(v)}`);
    } else if (p.required) {
      query.push(`${p.name}=${encodeURIComponent(String(validValue(route, p.name, p.schema)))}`);
    }
  }
  let body: string | undefined;
  if (route.body) {
    const branch = field?.in === 'body' ? field.branch : 0;
    const value =
      field?.in === 'body' && hostile
        ? bodyWith(route, branch, field.segments, hostile)
        : validValue(route, '', branchesOf(route.body)[branch]);
    body = JSON.stringify(value);
    depth = depthOf(value);
    if (hostile?.value === RAW && field?.in === 'body') body = body.replace(JSON.stringify(RAW), hostile.raw!);
  }
  return { path, query: query.join('&'), body, depth };
}

const describeHostile = (h: Hostile) => `${h.label}${h.value === RAW ? ` ${h.raw?.slice(0, 80)}` : ''}`;

/** Sends one hostile value and checks the answer against the verdict. */
async function attempt(field: Field, hostile: Hostile): Promise<void> {
  const plan = plans.get(field.route.key)!;
  const { path, query, body, depth } = requestFor(field, field.route, hostile);
  const res = await send(field.route.method, path, plan.caller, { query, body });
  const value = hostile.omit ? undefined : hostile.value === RAW ? hostile.raw : hostile.value;
  const verdict =
    hostile.verdict ??
    (hostile.omit ? 'survives' : forbids(field.schema, value, field.in !== 'body') ? 'refused' : 'survives');
  const what = `${field.key} ← ${describeHostile(hostile)}: ${res.status} ${res.text.slice(0, 300)}`;
  if (res.status >= 500) throw new Error(`5xx: ${what}`);
  if (verdict === 'rejected' && res.status < 400) throw new Error(`accepted what must be rejected: ${what}`);
  if (verdict === 'refused') {
    // The field itself or a part of it; for a size limit, the field that holds it (`media` over
    // 64 KiB); for a body nested deeper than any message may be, the body (refused before parsing).
    const named = ((res.body?.errors ?? []) as { field: string }[]).some(
      (e) =>
        e.field === field.expected ||
        e.field.startsWith(`${field.expected}.`) ||
        (res.status === 413 && field.expected.startsWith(`${e.field}.`)) ||
        (e.field === 'body' && depth > MAX_WIRE_JSON_DEPTH),
    );
    if (![400, 413].includes(res.status) || !named) throw new Error(`not refused naming ${field.expected}: ${what}`);
    reachedFields.add(field.key);
  }
}

/** Runs every generator of a field: explicit values once each, fast-check ones RUNS times from the fixed seed. */
async function tryField(field: Field): Promise<void> {
  const valid = field.in === 'body' ? validValue(field.route, String(field.segments.at(-1)), field.schema) : undefined;
  const kinds =
    field.in === 'body'
      ? bodyKinds(field, valid)
      : urlKinds(
          field,
          field.in === 'path'
            ? pathId(field.route, String(field.segments[0]))
            : String(validValue(field.route, String(field.segments[0]), field.schema)),
        );
  for (const kind of kinds) {
    for (const hostile of kind.values ?? []) {
      await attempt(field, hostile).catch((error: Error) => failures.push(error.message));
    }
    if (kind.arb) {
      const details = await fc.check(
        fc.asyncProperty(kind.arb, (hostile) => attempt(field, hostile)),
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      );
      if (details.failed)
        failures.push(String((details.errorInstance as Error | undefined)?.message ?? details.counterexample));
    }
  }
}

/** Runs `work` over `items`, `limit` at a time. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
    }),
  );
}

/**
 * Finds who may call a route: the first of user, admin and bot key that is not refused with
 * 401/403. For DELETE, an unknown id stands in for the resource until the end.
 */
async function planRoute(route: Route): Promise<Answer | undefined> {
  const { path, query, body } = requestFor(undefined, route);
  const probe = route.method === 'DELETE' ? path.replace(/[^/]+$/, randomUUID()) : path;
  for (const caller of [world.user, world.admin, world.bot]) {
    const res = await send(route.method, probe, caller, { query, body });
    if (res.status >= 500)
      failures.push(`5xx on a valid request: ${route.key} as ${caller.name}: ${res.status} ${res.text.slice(0, 300)}`);
    if (res.status === 401 || res.status === 403) continue;
    plans.set(route.key, { caller });
    return route.method === 'DELETE' ? undefined : res;
  }
  failures.push(`no caller may use ${route.key}`);
  return undefined;
}

/** A valid request reaches the route: 2xx, or the one documented refusal that needs a deployment feature. */
function checkBaseline(route: Route, res: Answer | undefined) {
  if (!res) return;
  if ((res.status >= 200 && res.status < 300) || res.body?.code === 'NATS_CREDENTIALS_UNAVAILABLE')
    reachedRoutes.add(route.key);
  else failures.push(`a valid request to ${route.key} was not accepted: ${res.status} ${res.text.slice(0, 300)}`);
}

/** Bodies that are not the route's shape at all: a 4xx (or, where a body is optional, whatever it answers), never a 5xx. */
const BAD_BODIES: { label: string; body: string; headers?: Record<string, string>; verdict: Verdict }[] = [
  { label: 'not JSON', body: '{"a":', verdict: 'rejected' },
  { label: 'no bytes', body: '', verdict: 'survives' },
  { label: 'a list', body: '[]', verdict: 'rejected' },
  { label: 'a string', body: '"x"', verdict: 'rejected' },
  { label: '1e400', body: '1e400', verdict: 'rejected' },
  { label: 'a list 100 000 deep', body: `${'['.repeat(100_000)}${']'.repeat(100_000)}`, verdict: 'rejected' },
  { label: 'an object 50 000 deep', body: `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`, verdict: 'rejected' },
  { label: 'text/plain', body: 'hello', headers: { 'content-type': 'text/plain' }, verdict: 'rejected' },
  { label: 'over 1 MiB', body: JSON.stringify({ x: 'x'.repeat(1_100_000) }), verdict: 'rejected' },
  { label: 'null', body: 'null', verdict: 'survives' },
  { label: 'a byte-order mark', body: '\ufeff{}', verdict: 'survives' },
];

async function tryBadBodies(route: Route): Promise<void> {
  const plan = plans.get(route.key)!;
  const { path, query } = requestFor(undefined, route);
  for (const bad of BAD_BODIES) {
    const res = await send(route.method, path, plan.caller, { query, body: bad.body, headers: bad.headers });
    const what = `${route.key} body ← ${bad.label}: ${res.status} ${res.text.slice(0, 300)}`;
    if (res.status >= 500) failures.push(`5xx: ${what}`);
    else if (bad.verdict === 'rejected' && res.status < 400) failures.push(`accepted what must be rejected: ${what}`);
  }
}

/** Reads one item of a list to get a genuine cursor (records and activity arrive asynchronously). */
async function genuineCursor(route: Route): Promise<string | undefined> {
  const plan = plans.get(route.key)!;
  const { path, query } = requestFor(undefined, route);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await send('GET', path, plan.caller, { query: [query, 'limit=1'].filter(Boolean).join('&') });
    if (typeof res.body?.next_cursor === 'string') return res.body.next_cursor as string;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 500));
  }
}

const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const base64url = (text: string | Uint8Array) => Buffer.from(text).toString('base64url');

/** Edits of a genuine cursor, and cursors of other lists. */
function cursorEdits(genuine: string, others: string[]): fc.Arbitrary<string>[] {
  return [
    // One character changed (not the last, whose low bits may not count).
    fc.tuple(fc.nat(), fc.constantFrom(...BASE64URL.split(''))).map(([at, c]) => {
      const i = at % Math.max(genuine.length - 1, 1);
      return genuine.slice(0, i) + (genuine[i] === c ? (c === 'A' ? 'B' : 'A') : c) + genuine.slice(i + 1);
    }),
    fc.integer({ min: 1, max: Math.max(genuine.length - 1, 1) }).map((n) => genuine.slice(0, n)),
    fc
      .string({ unit: fc.constantFrom(...BASE64URL.split('')), minLength: 1, maxLength: 8 })
      .map((tail) => genuine + tail),
    fc.jsonValue({ maxDepth: 3 }).map((v) => base64url(JSON.stringify(v))),
    fc
      .tuple(
        fc.constantFrom('2026-11-23T10:00:00.000Z', 'not a date', 'x'.repeat(300), 1e300, -1),
        fc.constantFrom(randomUUID(), 'not-an-id', 42),
      )
      .map(([a, b]) => base64url(JSON.stringify([a, b]))),
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => base64url(bytes)),
    ...(others.length ? [fc.constantFrom(...others)] : []),
  ];
}

// ---------------------------------------------------------------------------------------

describe('hostile input (e2e)', () => {
  let routes: Route[];
  const id = runId('hostile');

  beforeAll(async () => {
    stack = await startStack(id, {
      PARLEY_ADMIN_USERNAME: 'admin',
      PARLEY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      RATE_LIMIT_PER_MINUTE: '1000000',
      BOT_RATE_LIMIT_PER_MINUTE: '1000000',
    });
    base = `http://127.0.0.1:${stack.services.get('gateway')!.port}`;
    const document = (await send('GET', '/openapi.json', undefined)).body;
    routes = routesOf(document);
    world = await buildWorld();
  }, 180_000);

  afterAll(async () => {
    if (stack) await stopStack(stack);
    // Also when the stack never came up: its services may have made their schemas and streams.
    await cleanupRun(id);
  }, 60_000);

  it('answers every hostile value in every field of every route without a 5xx, naming the field it refuses', async () => {
    const fields = routes.flatMap(fieldsOf);
    expect(routes.length).toBeGreaterThan(40);
    expect(fields.length).toBeGreaterThan(100);
    // DELETE routes last: their valid request removes the fixture.
    const ordered = [...routes.filter((r) => r.method !== 'DELETE'), ...routes.filter((r) => r.method === 'DELETE')];
    for (const route of ordered) {
      const baseline = await planRoute(route);
      checkBaseline(route, baseline);
      if (!plans.has(route.key)) continue;
      await pool(
        fields.filter((f) => f.route === route),
        CONCURRENCY,
        tryField,
      );
      if (route.body) await tryBadBodies(route);
      if (route.method === 'DELETE') {
        const { path, query, body } = requestFor(undefined, route);
        checkBaseline(route, await send(route.method, path, plans.get(route.key)!.caller, { query, body }));
      }
    }
    expect(failures).toEqual([]);
    expect(routes.map((r) => r.key).filter((k) => !reachedRoutes.has(k))).toEqual([]);
    expect(fields.map((f) => f.key).filter((k) => !reachedFields.has(k))).toEqual([]);
  }, 600_000);

  it('answers an edited cursor, or one another list made, with 400 naming the cursor', async () => {
    const lists = routes.filter((r) => r.method === 'GET' && r.params.some((p) => p.name === 'cursor'));
    expect(lists.length).toBeGreaterThan(5);
    const problems: string[] = [];
    const genuine = new Map<string, string>();
    for (const route of lists) {
      if (!plans.has(route.key)) await planRoute(route);
      const cursor = await genuineCursor(route);
      if (cursor) genuine.set(route.key, cursor);
      else problems.push(`no cursor from ${route.key}: it needs two items`);
    }
    for (const [key, cursor] of genuine) {
      const route = lists.find((r) => r.key === key)!;
      const others = [...genuine].filter(([k]) => k !== key).map(([, c]) => c);
      for (const edit of cursorEdits(cursor, others)) {
        const details = await fc.check(
          fc.asyncProperty(edit, async (edited) => {
            fc.pre(edited !== cursor);
            const { path, query } = requestFor(undefined, route);
            const res = await send('GET', path, plans.get(key)!.caller, {
              query: [query, `cursor=${encodeURIComponent(edited)}`].filter(Boolean).join('&'),
            });
            // The gateway names the query parameter (`query.cursor`) whether it refused the value
            // itself (too long, NUL) or the service found the signature wrong (INVALID_CURSOR).
            const named = ((res.body?.errors ?? []) as { field: string }[]).some((e) => e.field === 'query.cursor');
            if (res.status !== 400 || !named || !['VALIDATION_FAILED', 'INVALID_CURSOR'].includes(res.body?.code)) {
              throw new Error(`${key} cursor=${edited}: ${res.status} ${res.text.slice(0, 200)}`);
            }
          }),
          { seed: SEED, numRuns: RUNS, endOnFailure: true },
        );
        if (details.failed) problems.push(String((details.errorInstance as Error | undefined)?.message));
      }
    }
    expect(problems).toEqual([]);
  }, 300_000);

  it('never answers 5xx outside the document: docs, assets, metrics, health, console, unknown routes, odd headers', async () => {
    const paths = [
      '/docs',
      '/docs/assets/swagger-ui.css',
      '/docs/assets/%00',
      '/docs/assets/%ED%A0%80',
      '/docs/assets/..%2F..%2Fpackage.json',
      `/docs/assets/${'a'.repeat(90)}`,
      '/openapi.json?x=%00',
      '/metrics',
      '/metrics?name%5B%5D=%00',
      '/healthz',
      '/readyz?x=%FF',
      '/console',
      '/console/',
      '/console/index.html',
      '/console/%00',
      '/console/%ED%A0%80',
      '/console/..%2F..%2Fpackage.json',
      `/console/${'a'.repeat(5000)}`,
      '/api/v1/nope',
      '/api/v1/sessions/x/y/z',
      '/%00',
      `/${'%F0'.repeat(100)}`,
    ];
    const problems: string[] = [];
    const session = world.ids.sessions;
    const headers: [string, Record<string, string>][] = [
      ['/api/v1/me', { authorization: `Bearer ${'a'.repeat(8000)}` }],
      ['/api/v1/me', { authorization: 'Bearer x.y.z' }],
      ['/api/v1/me', { authorization: 'Basic YWRtaW46YWRtaW4=' }],
      ['/api/v1/me', { 'x-api-key': 'a'.repeat(300) }],
      ['/api/v1/me', { 'x-api-key': `prl_00000000_${'A'.repeat(43)}` }],
      [`/api/v1/sessions/${session}/stream`, { ...world.user.headers, 'last-event-id': '99999999999999999999' }],
      [`/api/v1/sessions/${session}/stream`, { ...world.user.headers, 'last-event-id': '3000000000' }],
      [`/api/v1/sessions/${session}/stream`, { ...world.user.headers, 'last-event-id': '-1' }],
      [`/api/v1/sessions/${session}/stream?access_token=${'a'.repeat(3000)}`, {}],
    ];
    for (const [path, given] of headers) {
      const res = await send('GET', path, undefined, { headers: given });
      if (res.status >= 500)
        problems.push(`GET ${path} with ${Object.keys(given).join(', ')}: ${res.status} ${res.text.slice(0, 200)}`);
    }
    for (const path of paths) {
      for (const method of ['GET', 'POST', 'DELETE']) {
        const res = await send(method, path, world.user, method === 'POST' ? { body: '{"a":\u0000}' } : {});
        if (res.status >= 500) problems.push(`${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`);
      }
    }
    expect(problems).toEqual([]);
  }, 120_000);
});

import { z } from 'zod';
import * as contracts from './index';
import { requestContracts } from './permissions';

/*
 * Every field a client or a NATS caller may send is built from the blocks in input.ts: this
 * walks every public request schema and every internal request and event contract down to
 * its leaves, and checks that no string leaf takes NUL, an unpaired surrogate or unbounded
 * length, no JSON object leaf takes NUL or unbounded depth, no number leaf takes an
 * unbounded value, and no list leaf takes unbounded length.
 */

type Def = Record<string, unknown> & { type: string };
const defOf = (schema: z.ZodType) => schema._zod.def as unknown as Def;

interface Leaf {
  path: string;
  schema: z.ZodType;
}

/** The leaves of a schema (strings, numbers, records, arrays…), with their paths. */
function leaves(schema: z.ZodType, path: string, out: Leaf[] = [], seen = new Set<z.ZodType>()): Leaf[] {
  if (seen.has(schema)) return out;
  seen.add(schema);
  const def = defOf(schema);
  switch (def.type) {
    case 'object':
      for (const [key, child] of Object.entries(def.shape as Record<string, z.ZodType>)) {
        leaves(child, `${path}.${key}`, out, seen);
      }
      return out;
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'nonoptional':
    case 'catch':
      return leaves(def.innerType as z.ZodType, path, out, seen);
    case 'pipe':
      return leaves(def.in as z.ZodType, path, out, seen);
    case 'union':
      for (const option of def.options as z.ZodType[]) leaves(option, path, out, seen);
      return out;
    case 'array':
      out.push({ path, schema });
      return leaves(def.element as z.ZodType, `${path}.0`, out, seen);
    default:
      out.push({ path, schema });
      return out;
  }
}

const isSchema = (value: unknown): value is z.ZodType => value instanceof z.ZodType;

/** The public inputs (bodies, queries, events bots send) and every internal request and event. */
function inputSchemas(): [string, z.ZodType][] {
  const named = Object.entries(contracts).filter(
    ([name, value]) =>
      isSchema(value) &&
      /(Body|Query|Filters|EventInput|Input|Param|Event)Schema$|^(NewMessage|Media|UsageEvent|ActivityEvent)Schema$/.test(
        name,
      ),
  ) as [string, z.ZodType][];
  const rpc = requestContracts().map((c) => [c.subject, c.request] as [string, z.ZodType]);
  const events = Object.values(contracts.DomainEvents).map((e) => [e.subject, e.schema] as [string, z.ZodType]);
  return [...named, ...rpc, ...events];
}

/** Values some string field or other accepts: the first one a leaf takes shows it is free text. */
const SAMPLES = [
  'abcdefgh',
  'abc',
  'USD',
  'UTC',
  'day',
  '12.5',
  'r-123',
  'a@example.com',
  '2026-11-23T10:00:00Z',
  '01a22ca3-f050-74ab-97cd-108c8576130b',
];
const spliced = (sample: string, inserted: string) => `${sample.slice(0, 1)}${inserted}${sample.slice(1)}`;
const nested = (depth: number): unknown => (depth <= 1 ? {} : { k: nested(depth - 1) });

function problemsOf(name: string, leaf: Leaf): string[] {
  const def = defOf(leaf.schema);
  const accepts = (value: unknown) => leaf.schema.safeParse(value).success;
  const where = `${name}${leaf.path}`;
  switch (def.type) {
    case 'string': {
      const sample = SAMPLES.find(accepts);
      const dirty = ['\u0000', '\ud800', '\udc00'].flatMap((bad) => [bad, spliced(sample ?? 'abc', bad)]);
      const problems = dirty.filter(accepts).map((v) => `${where} accepts ${JSON.stringify(v)}`);
      if (sample !== undefined && accepts(sample + 'a'.repeat(1_000_000)))
        problems.push(`${where} has no length bound`);
      return problems;
    }
    case 'record': {
      const problems: string[] = [];
      if (accepts({ k: 'a\u0000' }) || accepts({ 'k\u0000': 1 }) || accepts({ k: '\ud800' })) {
        problems.push(`${where} takes NUL or unpaired surrogates`);
      }
      if (accepts(nested(40))) problems.push(`${where} nests without bound`);
      return problems;
    }
    case 'number':
      return [Infinity, Number.MAX_VALUE, 2 ** 60].filter(accepts).map((v) => `${where} accepts ${v}`);
    case 'array':
      return accepts(Array.from({ length: 100_000 })) ? [`${where} has no length bound`] : [];
    case 'enum':
    case 'literal':
    case 'boolean':
    case 'null':
    case 'undefined':
      return [];
    case 'unknown':
    case 'any':
      return [`${where} takes anything`];
    default:
      return [`${where} is a ${def.type}: teach this test about it`];
  }
}

describe('every input contract', () => {
  const schemas = inputSchemas();

  it('covers the public inputs and every internal request and event', () => {
    const names = schemas.map(([name]) => name);
    for (const expected of [
      'NewMessageSchema',
      'UsageEventSchema',
      'ActivityEventSchema',
      'SessionFiltersSchema',
      'PageQuerySchema',
      'message.messages.append',
      'usage.summary.get',
      'evt.session.created',
    ]) {
      expect(names).toContain(expected);
    }
    expect(schemas.length).toBeGreaterThan(60);
  });

  it('refuses NUL, unpaired surrogates, unbounded text, depth, numbers and lists in every field', () => {
    const problems = schemas.flatMap(([name, schema]) => leaves(schema, '').flatMap((leaf) => problemsOf(name, leaf)));
    expect(problems).toEqual([]);
  });
});

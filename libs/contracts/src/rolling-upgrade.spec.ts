import type { z } from 'zod';
import * as contracts from './index';
import { CreateGroupBodySchema } from './access-control';
import { DomainEvents, SessionEvents } from './events';
import { loosen } from './rpc';
import { UsageEventSchema } from './usage';

/**
 * Rolling upgrades (docs/operations.md): instances of two versions run side by side, so every
 * internal message (request/reply, domain event) must be read by a peer one version behind or
 * ahead. A newer peer's unknown field is dropped, never refused; a field an older peer does not
 * send must be optional.
 */
type Def = Record<string, unknown> & { type: string };
const defOf = (schema: z.ZodType) => schema._zod.def as unknown as Def;

/** The paths of every object in `schema` that refuses unknown keys (zod's strict objects). */
function strictObjects(schema: z.ZodType, path = '', seen = new Set<unknown>()): string[] {
  if (seen.has(schema)) return [];
  seen.add(schema);
  const def = defOf(schema);
  const inner = (key: string, at = path) => strictObjects(def[key] as z.ZodType, at, seen);
  switch (def.type) {
    case 'object': {
      const own = (def.catchall as z.ZodType | undefined) && defOf(def.catchall as z.ZodType).type === 'never';
      const fields = Object.entries(def.shape as Record<string, z.ZodType>).flatMap(([key, value]) =>
        strictObjects(value, `${path}.${key}`, seen),
      );
      return [...(own ? [path || '(root)'] : []), ...fields];
    }
    case 'array':
      return inner('element', `${path}[]`);
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'nonoptional':
    case 'catch':
      return inner('innerType');
    case 'pipe':
      return [...inner('in'), ...inner('out')];
    case 'union':
      return (def.options as z.ZodType[]).flatMap((o) => strictObjects(o, path, seen));
    case 'record':
      return inner('valueType', `${path}.*`);
    case 'intersection':
      return [...inner('left'), ...inner('right')];
    case 'tuple':
      return (def.items as z.ZodType[]).flatMap((item, i) => strictObjects(item, `${path}[${i}]`, seen));
    case 'lazy':
      return strictObjects((def.getter as () => z.ZodType)(), path, seen);
    default:
      return [];
  }
}

const isSchema = (value: unknown): value is z.ZodType => typeof (value as z.ZodType | null)?.safeParse === 'function';

/** Every request/reply contract exported, by subject. */
function rpcContracts(): Map<string, { request: z.ZodType; response: z.ZodType }> {
  const found = new Map<string, { request: z.ZodType; response: z.ZodType }>();
  const seen = new Set<unknown>();
  const visit = (value: unknown): void => {
    if (!value || typeof value !== 'object' || seen.has(value) || isSchema(value)) return;
    seen.add(value);
    const v = value as Record<string, unknown>;
    if (typeof v.subject === 'string' && isSchema(v.request) && isSchema(v.response)) {
      found.set(v.subject, { request: v.request, response: v.response });
      return;
    }
    for (const child of Object.values(v)) visit(child);
  };
  visit(contracts);
  return found;
}

describe('contracts across versions', () => {
  it('finds a strict object where there is one (public bodies name unknown fields)', () => {
    expect(strictObjects(CreateGroupBodySchema)).toEqual(['(root)']);
    expect(strictObjects(loosen(CreateGroupBodySchema))).toEqual([]);
  });

  it('every request and response of every request/reply contract drops unknown fields at every depth', () => {
    const all = rpcContracts();
    expect(all.size).toBeGreaterThan(40);
    const strict = [...all].flatMap(([subject, c]) => [
      ...strictObjects(c.request).map((p) => `${subject} request ${p}`),
      ...strictObjects(c.response).map((p) => `${subject} response ${p}`),
    ]);
    expect(strict).toEqual([]);
  });

  it('every domain event, as consumers read it (loosened), drops unknown fields', () => {
    for (const event of [...Object.values(DomainEvents), SessionEvents]) {
      expect(strictObjects(loosen(event.schema))).toEqual([]);
    }
  });

  it('reads a newer peer’s session event with a field it does not know, and an older peer’s without status', () => {
    const schema = loosen(SessionEvents.schema);
    const base = {
      session_id: '0190f5a8-0000-7000-8000-000000000001',
      user_id: '0190f5a8-0000-7000-8000-000000000002',
      bot_id: null,
      group_ids: [],
      occurred_at: '2026-12-01T10:00:00.000Z',
    };
    // From a newer version: a field added after this one.
    expect(schema.parse({ ...base, status: 'active', pinned: true, labels: { a: 1 } })).toEqual({
      ...base,
      status: 'active',
    });
    // From a version before `status` was added to the session events.
    expect(schema.parse(base)).toEqual(base);
  });

  it("keeps bots' usage events strict: a misspelt field is refused, so upgrade the usage service before bots send new fields", () => {
    expect(strictObjects(UsageEventSchema)).toEqual(['(root)']);
  });
});

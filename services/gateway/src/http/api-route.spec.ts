import { z } from 'zod';
import { IdParamSchema, PageQuerySchema, ParleyError, tooLarge } from '@parley/contracts';
import { validatePart, type ApiRouteSpec } from './api-route';
import { paged } from './paging';

const base = { summary: 'x', tags: ['x'], status: 200, response: null } satisfies ApiRouteSpec;
const Body = z
  .object({ title: z.string(), note: z.string().refine((v) => v.length < 5, tooLarge('too long')) })
  .strict();
const Filters = z.object({ status: z.enum(['active', 'archived']).optional() });

function problem(run: () => unknown): ParleyError {
  try {
    run();
  } catch (error) {
    if (error instanceof ParleyError) return error;
    throw error;
  }
  throw new Error('no problem raised');
}

describe('validatePart', () => {
  it('names path and query fields under path. and query., body fields by their own path', () => {
    const spec: ApiRouteSpec = { ...base, params: IdParamSchema, query: PageQuerySchema, body: Body };
    expect(problem(() => validatePart(spec, 'params', { id: 'nope' })).errors).toEqual([
      { field: 'path.id', message: 'must be a UUID' },
    ]);
    const query = problem(() => validatePart(spec, 'query', { limit: '0' }));
    expect(query.code).toBe('VALIDATION_FAILED');
    expect(query.errors?.map((e) => e.field)).toEqual(['query.limit']);
    const body = problem(() => validatePart(spec, 'body', { title: 1, extra: true }));
    expect(body.errors?.map((e) => e.field).sort()).toEqual(['extra', 'note', 'title']);
  });

  it('answers a value over a size limit in a schema with 413 naming it', () => {
    const spec: ApiRouteSpec = { ...base, body: Body };
    const large = problem(() => validatePart(spec, 'body', { title: 't', note: 'far too long' }));
    expect(large.code).toBe('PAYLOAD_TOO_LARGE');
    expect(large.errors).toEqual([{ field: 'note', message: 'too long' }]);
  });

  it('merges several query schemas and reports the problems of all of them', () => {
    const spec: ApiRouteSpec = { ...base, query: [Filters, PageQuerySchema] };
    expect(validatePart(spec, 'query', { status: 'active', limit: '20', other: 'x' })).toEqual({
      status: 'active',
      limit: 20,
    });
    expect(validatePart(spec, 'query', undefined)).toEqual({});
    const both = problem(() => validatePart(spec, 'query', { status: 'gone', limit: '500' }));
    expect(both.errors?.map((e) => e.field)).toEqual(['query.status', 'query.limit']);
  });

  it('requires a body unless the route makes it optional, and wants a JSON object', () => {
    const spec: ApiRouteSpec = { ...base, body: z.object({ flag: z.boolean().default(false) }).strict() };
    for (const missing of [undefined, null]) {
      expect(problem(() => validatePart(spec, 'body', missing)).errors).toEqual([
        { field: 'body', message: 'a JSON body is required' },
      ]);
    }
    expect(validatePart({ ...spec, optionalBody: true }, 'body', undefined)).toEqual({ flag: false });
    for (const notObject of ['text', 12, true, [1, 2], []]) {
      const bad = problem(() => validatePart(spec, 'body', notObject));
      expect(bad.code).toBe('VALIDATION_FAILED');
      expect(bad.errors).toEqual([{ field: 'body', message: 'must be a JSON object' }]);
    }
  });

  it('is a programming error to take a part the route does not declare', () => {
    expect(() => validatePart(base, 'body', {})).toThrow(/no body schema/);
    expect(() => validatePart(base, 'query', {})).toThrow(/no query schema/);
  });
});

describe('paged', () => {
  it('turns the paging fields of a merged query into one page request beside the filters', () => {
    expect(paged({ status: 'active', limit: 20 })).toEqual({ status: 'active', page: { kind: 'cursor', limit: 20 } });
    expect(paged({ q: 'x', page: 2, size: 10 })).toEqual({ q: 'x', page: { kind: 'offset', page: 2, size: 10 } });
  });
});

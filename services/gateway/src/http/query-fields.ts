import type { z } from 'zod';
import { ParleyError } from '@parley/contracts';
import type { ApiRouteSpec } from './api-route';

/** The top-level names a query schema reads (objects, refined objects and pipes from objects). */
function namesOf(schema: z.ZodType): string[] {
  const def = (schema as unknown as { def?: { type?: string; in?: z.ZodType; shape?: Record<string, unknown> } }).def;
  if (def?.type === 'object' && def.shape) return Object.keys(def.shape);
  if (def?.type === 'pipe' && def.in) return namesOf(def.in);
  return [];
}

const bySpec = new WeakMap<ApiRouteSpec, Set<string>>();
const byRequest = new WeakMap<object, Set<string>>();

/**
 * Notes which fields of a request came from its query string (a route with a query and no
 * body), for `queryFieldNames`. Called where the query is validated: a map entry per request,
 * where an interceptor cost every request an observable chain.
 */
export function noteQueryFields(request: object, spec: ApiRouteSpec): void {
  if (!spec.query || spec.body) return;
  let names = bySpec.get(spec);
  if (!names) {
    const schemas = Array.isArray(spec.query) ? spec.query : [spec.query];
    names = new Set((schemas as z.ZodType[]).flatMap(namesOf));
    bySpec.set(spec, names);
  }
  byRequest.set(request, names);
}

/**
 * A service names a field it refuses as its request names it (`cursor`, `tz`); when that field
 * came from the query string, the client is told `query.cursor`, as the gateway's own checks
 * name it.
 */
export function queryFieldNames(request: object, error: ParleyError): void {
  const names = byRequest.get(request);
  if (!names || !error.errors?.some((e) => names.has(e.field.split('.')[0] ?? ''))) return;
  const errors = error.errors.map((e) =>
    names.has(e.field.split('.')[0] ?? '') ? { ...e, field: `query.${e.field}` } : e,
  );
  // The error came over NATS for this request alone: renaming its fields in place keeps its
  // code, status and the rest as they were.
  Object.defineProperty(error, 'errors', { value: errors });
}

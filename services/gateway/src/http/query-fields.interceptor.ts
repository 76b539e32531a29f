import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import { catchError, throwError, type Observable } from 'rxjs';
import type { z } from 'zod';
import { ParleyError } from '@parley/contracts';
import { routeSpec, type ApiRouteSpec } from './api-route';

/** The top-level names a query schema reads (objects, refined objects and pipes from objects). */
function namesOf(schema: z.ZodType): string[] {
  const def = (schema as unknown as { def?: { type?: string; in?: z.ZodType; shape?: Record<string, unknown> } }).def;
  if (def?.type === 'object' && def.shape) return Object.keys(def.shape);
  if (def?.type === 'pipe' && def.in) return namesOf(def.in);
  return [];
}

const cache = new WeakMap<ApiRouteSpec, Set<string>>();

function queryNames(spec: ApiRouteSpec): Set<string> {
  let names = cache.get(spec);
  if (!names) {
    const schemas = spec.query ? (Array.isArray(spec.query) ? spec.query : [spec.query]) : [];
    names = new Set((schemas as z.ZodType[]).flatMap(namesOf));
    cache.set(spec, names);
  }
  return names;
}

/**
 * A service names a field it refuses as its request names it (`cursor`, `tz`); when that field
 * came from the query string, the client is told `query.cursor`, as the gateway's own checks
 * name it.
 */
@Injectable()
export class QueryFieldNames implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const spec = routeSpec(context.getHandler());
    if (!spec?.query || spec.body) return next.handle();
    const names = queryNames(spec);
    return next.handle().pipe(
      catchError((error: unknown) => {
        if (!(error instanceof ParleyError) || !error.errors?.some((e) => names.has(e.field.split('.')[0] ?? ''))) {
          return throwError(() => error);
        }
        const errors = error.errors.map((e) =>
          names.has(e.field.split('.')[0] ?? '') ? { ...e, field: `query.${e.field}` } : e,
        );
        // The error came over NATS for this request alone: renaming its fields in place keeps
        // its code, status and the rest as they were.
        Object.defineProperty(error, 'errors', { value: errors });
        return throwError(() => error);
      }),
    );
  }
}

import 'reflect-metadata';
import { SetMetadata, applyDecorators, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ParleyError, validationError, type ErrorCode } from '@parley/contracts';
import { noteQueryFields } from './query-fields';

export interface ApiRouteSpec {
  summary: string;
  tags: string[];
  /** Path parameters, handed to `@ValidParams()`; errors name `path.<name>`. */
  params?: z.ZodType;
  /** Query parameters, handed to `@ValidQuery()`; several schemas are merged; errors name `query.<name>`. */
  query?: z.ZodType | readonly z.ZodType[];
  /** The JSON body, handed to `@ValidBody()`; errors name the field (`title`, `items.0.role`). */
  body?: z.ZodType;
  /** The body may be left out; it is then read as `{}`. */
  optionalBody?: boolean;
  /**
   * The handler takes the raw body (`@Body()`) and hands it to a validator that checks it piece
   * by piece with the schemas `body` is built from (EventIngest: each event, naming its index).
   */
  validatesOwnBody?: boolean;
  /** Status of success and its schema (null: no content). */
  status: number;
  response: z.ZodType | null;
  /** Error codes this route may answer, beside the ones every authenticated route may. */
  errors?: ErrorCode[];
  public?: boolean;
  admin?: boolean;
  /** The route also accepts `?access_token=` (server-sent events from browsers). */
  queryToken?: boolean;
}

export const API_ROUTE = 'parley:api-route';

/**
 * Describes a gateway route once: its parameters, query and body are validated from these
 * schemas (`@ValidParams()`, `@ValidQuery()`, `@ValidBody()`) and the OpenAPI document is
 * generated from them.
 */
export const ApiRoute = (spec: ApiRouteSpec) => applyDecorators(SetMetadata(API_ROUTE, spec));

/** The `@ApiRoute` spec of a handler, if it has one. */
export function routeSpec(handler: object): ApiRouteSpec | undefined {
  return Reflect.getMetadata(API_ROUTE, handler) as ApiRouteSpec | undefined;
}

type Merged<T extends readonly z.ZodType[]> = T extends readonly [
  infer H extends z.ZodType,
  ...infer R extends z.ZodType[],
]
  ? z.output<H> & Merged<R>
  : unknown;

/** What a validated part holds: a schema's output, or the merged outputs of several (`query: [A, B]`). */
export type Valid<S extends z.ZodType | readonly z.ZodType[]> = S extends z.ZodType
  ? z.output<S>
  : S extends readonly z.ZodType[]
    ? Merged<S>
    : never;

export type RoutePart = 'params' | 'query' | 'body';

/** A body must be a JSON object: anything else names `body` rather than `(root)`. */
function bodyProblem(message: string): ParleyError {
  return new ParleyError('VALIDATION_FAILED', `body: ${message}`, { errors: [{ field: 'body', message }] });
}

/**
 * One part of a request, parsed with the route's schema for it. Failures are 400
 * VALIDATION_FAILED problems naming each field: `path.id`, `query.limit`, and body fields by
 * their own path; a value over a size limit in a schema is a 413 naming the field.
 */
export function validatePart(spec: ApiRouteSpec, part: RoutePart, value: unknown): unknown {
  if (part === 'body') {
    if (!spec.body) throw new Error('@ValidBody() on a route whose @ApiRoute has no body schema');
    if (value === undefined || value === null) {
      if (!spec.optionalBody) throw bodyProblem('a JSON body is required');
      value = {};
    }
    if (typeof value !== 'object' || Array.isArray(value)) throw bodyProblem('must be a JSON object');
    const result = spec.body.safeParse(value);
    if (!result.success) throw validationError(result.error);
    return result.data;
  }
  const declared = part === 'params' ? spec.params : spec.query;
  if (!declared)
    throw new Error(
      `@Valid${part === 'params' ? 'Params' : 'Query'}() on a route whose @ApiRoute has no ${part} schema`,
    );
  const schemas: readonly z.ZodType[] = Array.isArray(declared) ? declared : [declared as z.ZodType];
  const merged: Record<string, unknown> = {};
  const issues: z.core.$ZodIssue[] = [];
  for (const schema of schemas) {
    const result = schema.safeParse(value ?? {});
    if (result.success) Object.assign(merged, result.data);
    else issues.push(...result.error.issues);
  }
  if (issues.length > 0) throw validationError(new z.ZodError(issues), part === 'params' ? 'path' : 'query');
  return merged;
}

/** Which parts each handler takes validated: read back by the start-up check of every route. */
const VALID_PARTS = 'parley:valid-parts';

export function validatedParts(handler: object): RoutePart[] {
  return (Reflect.getMetadata(VALID_PARTS, handler) as RoutePart[] | undefined) ?? [];
}

function validDecorator(part: RoutePart) {
  const decorator = createParamDecorator(
    (_: unknown, context: ExecutionContext) => {
      const spec = routeSpec(context.getHandler());
      if (!spec) throw new Error(`a validated ${part} on a route without @ApiRoute`);
      const request = context.switchToHttp().getRequest<FastifyRequest>();
      if (part === 'query') noteQueryFields(request, spec);
      const value = part === 'params' ? request.params : part === 'query' ? request.query : request.body;
      return validatePart(spec, part, value);
    },
    [
      (target, key) => {
        if (key === undefined) return;
        const handler = (target as Record<string | symbol, object>)[key];
        Reflect.defineMetadata(VALID_PARTS, [...validatedParts(handler), part], handler);
      },
    ],
  );
  return () => decorator();
}

/** The path parameters, parsed with the route's `params` schema. */
export const ValidParams = validDecorator('params');
/** The query, parsed with the route's `query` schema (or schemas, merged). */
export const ValidQuery = validDecorator('query');
/** The JSON body, parsed with the route's `body` schema. */
export const ValidBody = validDecorator('body');

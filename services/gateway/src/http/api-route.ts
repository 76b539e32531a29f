import { SetMetadata, applyDecorators } from '@nestjs/common';
import type { z } from 'zod';
import { ParleyError, validationError, type ErrorCode } from '@parley/contracts';

export interface ApiRouteSpec {
  summary: string;
  tags: string[];
  params?: z.ZodType;
  query?: z.ZodType | z.ZodType[];
  body?: z.ZodType;
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

/** Describes a gateway route once: the OpenAPI document is generated from these. */
export const ApiRoute = (spec: ApiRouteSpec) => applyDecorators(SetMetadata(API_ROUTE, spec));

/** Validates one part of a request against its schema; failures are 400 problems naming each field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, part: 'body' | 'query' | 'path'): z.output<S> {
  if (part === 'body' && (value === undefined || value === null)) {
    throw new ParleyError('VALIDATION_FAILED', 'a JSON body is required', {
      errors: [{ field: 'body', message: 'a JSON body is required' }],
    });
  }
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw validationError(result.error, part === 'body' ? undefined : part);
  return result.data;
}

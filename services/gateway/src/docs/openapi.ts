import { RequestMethod, type Type } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { MetadataScanner } from '@nestjs/core';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '@parley/contracts';
import { routeSpec, validatedParts, type ApiRouteSpec } from '../http/api-route';

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const out = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema;
  delete out.$schema;
  return out;
}

function parameters(schema: z.ZodType | readonly z.ZodType[] | undefined, where: 'query' | 'path'): JsonSchema[] {
  const list: readonly z.ZodType[] = schema === undefined ? [] : Array.isArray(schema) ? schema : [schema as z.ZodType];
  return list.flatMap((s) => {
    const js = jsonSchema(s, 'input');
    const props = (js.properties ?? {}) as Record<string, JsonSchema>;
    const required = new Set((js.required as string[] | undefined) ?? []);
    return Object.entries(props).map(([name, prop]) => ({
      name,
      in: where,
      required: where === 'path' || required.has(name),
      schema: prop,
      ...(prop.description ? { description: prop.description } : {}),
    }));
  });
}

const TAG_DESCRIPTIONS: Record<string, string> = {
  auth: 'Logging in, tokens and the caller',
  users: 'Users and their roles (admin)',
  groups: 'Groups and their members',
  roles: 'Roles and their grants (admin)',
  bots: 'Bots and their API keys',
  sessions: 'Sessions: conversations, their export and live stream',
  messages: 'Messages in sessions, feedback and search',
  usage: 'LLM usage and activity from bots, prices, budgets and quotas',
};

/** What the body parser may answer on a route that reads a body (decisions/0018). */
const BODY_PARSER_CODES: ErrorCode[] = ['BAD_REQUEST', 'UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE'];

const problemRef = { $ref: '#/components/schemas/Problem' };

function errorResponses(spec: ApiRouteSpec): Record<string, JsonSchema> {
  const codes = new Set<ErrorCode>(spec.errors ?? []);
  if (spec.body || spec.query || spec.params) codes.add('VALIDATION_FAILED');
  if (spec.body) {
    for (const code of BODY_PARSER_CODES) codes.add(code);
  }
  if (!spec.public) codes.add('UNAUTHENTICATED');
  if (spec.admin) codes.add('FORBIDDEN');
  codes.add('INTERNAL');
  // Any route that reaches a service may find a statement cancelled by its timeout, the
  // service or its database away (503 at once), or the service slower than the request timeout.
  if (!spec.public || spec.body) {
    for (const code of ['QUERY_TIMEOUT', 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_TIMEOUT'] as const) codes.add(code);
  }
  const byStatus = new Map<number, string[]>();
  for (const code of codes) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      String(status),
      {
        description: list.join(', '),
        content: { 'application/problem+json': { schema: problemRef } },
      },
    ]),
  );
}

/**
 * A route's handler takes validated exactly the parts its spec declares: so each schema in an
 * `@ApiRoute` is the one its input is parsed with, and no declared schema goes unused.
 */
export function checkRoute(route: string, spec: ApiRouteSpec, handler: object): void {
  const parts = validatedParts(handler);
  const problems: string[] = [];
  const declared = { params: spec.params, query: spec.query, body: spec.body };
  for (const part of ['params', 'query', 'body'] as const) {
    const taken = parts.filter((p) => p === part).length;
    const own = part === 'body' && spec.validatesOwnBody;
    if (taken > 1) problems.push(`takes its ${part} validated more than once`);
    if (taken > 0 && !declared[part]) {
      problems.push(`takes its ${part} validated, but its @ApiRoute declares no ${part} schema`);
    }
    if (taken > 0 && own) problems.push('takes its body validated, but its @ApiRoute says it validates its own body');
    if (taken === 0 && declared[part] && !own) {
      problems.push(`declares a ${part} schema that it never takes (@Valid${part[0].toUpperCase()}${part.slice(1)}())`);
    }
  }
  if (problems.length > 0) throw new Error(`route ${route}: ${problems.join('; ')}`);
}

/** Builds the OpenAPI 3.1 document from the `@ApiRoute` metadata of the controllers, checking each route. */
export function buildOpenApi(controllers: Iterable<Type>): JsonSchema {
  const scanner = new MetadataScanner();
  const paths: Record<string, Record<string, JsonSchema>> = {};
  const tags = new Set<string>();
  for (const controller of controllers) {
    const base = String((Reflect.getMetadata(PATH_METADATA, controller) as string | undefined) ?? '');
    const prototype = controller.prototype as Record<string, unknown>;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler = prototype[name] as object;
      const spec = routeSpec(handler);
      if (!spec) continue;
      const sub = String((Reflect.getMetadata(PATH_METADATA, handler) as string | undefined) ?? '');
      const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod].toLowerCase();
      const path = `/${[base, sub].filter((p) => p && p !== '/').join('/')}`
        .replace(/\/+/g, '/')
        .replace(/:(\w+)/g, '{$1}');
      checkRoute(`${method.toUpperCase()} ${path}`, spec, handler);
      spec.tags.forEach((tag) => tags.add(tag));
      const success =
        spec.response === null
          ? { description: 'No content' }
          : { description: 'OK', content: { 'application/json': { schema: jsonSchema(spec.response, 'output') } } };
      paths[path] ??= {};
      paths[path][method] = {
        operationId: `${controller.name.replace(/Controller$/, '')}.${name}`,
        summary: spec.summary,
        tags: spec.tags,
        ...(spec.public ? { security: [] } : {}),
        parameters: [...parameters(spec.params, 'path'), ...parameters(spec.query, 'query')],
        ...(spec.body
          ? {
              requestBody: {
                required: !spec.optionalBody,
                content: { 'application/json': { schema: jsonSchema(spec.body, 'input') } },
              },
            }
          : {}),
        responses: { [String(spec.status)]: success, ...errorResponses(spec) },
      };
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Parley API',
      version: '1.0.0',
      description:
        'Sessions, messages, LLM usage and access control for chat and bot products. Errors are application/problem+json with a stable `code`.',
      license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }, { apiKey: [] }],
    tags: [...tags].sort().map((name) => ({ name, description: TAG_DESCRIPTIONS[name] ?? name })),
    paths,
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
      },
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'detail', 'code', 'retryable'],
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            code: { type: 'string', enum: Object.keys(ERROR_CODES) },
            retryable: { type: 'boolean' },
            instance: { type: 'string' },
            errors: {
              type: 'array',
              items: {
                type: 'object',
                required: ['field', 'message'],
                properties: { field: { type: 'string' }, message: { type: 'string' } },
              },
            },
          },
        },
      },
    },
    'x-error-codes': Object.fromEntries(Object.entries(ERROR_CODES).map(([code, v]) => [code, v])),
  };
}

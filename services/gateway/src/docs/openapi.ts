import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import type { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '@parley/contracts';
import { API_ROUTE, type ApiRouteSpec } from '../http/api-route';

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const out = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as JsonSchema;
  delete out.$schema;
  return out;
}

function parameters(schema: z.ZodType | z.ZodType[] | undefined, where: 'query' | 'path'): JsonSchema[] {
  const list = schema === undefined ? [] : Array.isArray(schema) ? schema : [schema];
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

const problemRef = { $ref: '#/components/schemas/Problem' };

function errorResponses(spec: ApiRouteSpec): Record<string, JsonSchema> {
  const codes = new Set<ErrorCode>(spec.errors ?? []);
  if (spec.body || spec.query || spec.params) codes.add('VALIDATION_FAILED');
  if (spec.body) codes.add('PAYLOAD_TOO_LARGE');
  if (!spec.public) codes.add('UNAUTHENTICATED');
  if (spec.admin) codes.add('FORBIDDEN');
  codes.add('INTERNAL');
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

/** Builds the OpenAPI 3.1 document from the `@ApiRoute` metadata of every controller. */
export function buildOpenApi(discovery: DiscoveryService, scanner: MetadataScanner, reflector: Reflector): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const wrapper of discovery.getControllers()) {
    const instance = wrapper.instance as object | undefined;
    if (!instance || !wrapper.metatype) continue;
    const base = String(reflector.get<string>(PATH_METADATA, wrapper.metatype) ?? '');
    const prototype = Object.getPrototypeOf(instance) as Record<string, unknown>;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler = prototype[name] as object;
      const spec = reflector.get<ApiRouteSpec | undefined>(API_ROUTE, handler as never);
      if (!spec) continue;
      const sub = String(reflector.get<string>(PATH_METADATA, handler as never) ?? '');
      const method = RequestMethod[reflector.get<RequestMethod>(METHOD_METADATA, handler as never)].toLowerCase();
      const path = `/${[base, sub].filter((p) => p && p !== '/').join('/')}`
        .replace(/\/+/g, '/')
        .replace(/:(\w+)/g, '{$1}');
      const success =
        spec.response === null
          ? { description: 'No content' }
          : { description: 'OK', content: { 'application/json': { schema: jsonSchema(spec.response, 'output') } } };
      paths[path] ??= {};
      paths[path][method] = {
        operationId: `${wrapper.metatype.name.replace(/Controller$/, '')}.${name}`,
        summary: spec.summary,
        tags: spec.tags,
        ...(spec.public ? { security: [] } : {}),
        parameters: [...parameters(spec.params, 'path'), ...parameters(spec.query, 'query')],
        ...(spec.body
          ? {
              requestBody: {
                required: true,
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
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }, { apiKey: [] }],
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

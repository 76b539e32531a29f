import { z } from 'zod';

/** A request/reply subject with the schemas of both directions, imported by caller and handler. */
export interface RpcContract<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  readonly subject: string;
  readonly request: Req;
  readonly response: Res;
}

/**
 * A request/reply contract. Both schemas are loosened: objects drop fields they do not know
 * instead of refusing them, so a caller or handler one version ahead is understood during a
 * rolling upgrade. (Public request bodies stay strict at the gateway, naming unknown fields.)
 */
export function rpc<Req extends z.ZodType, Res extends z.ZodType>(
  subject: string,
  request: Req,
  response: Res,
): RpcContract<Req, Res> {
  return { subject, request: loosen(request), response: loosen(response) };
}

/** The same schema with every object in it (however nested) stripping unknown keys rather than rejecting them. */
export function loosen<T extends z.ZodType>(schema: T): T {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  const inner = (key: string) => loosen(def[key] as z.ZodType);
  switch (def.type) {
    case 'object': {
      const shape = Object.fromEntries(
        Object.entries(def.shape as Record<string, z.ZodType>).map(([key, value]) => [key, loosen(value)]),
      );
      return schema.clone({ ...def, shape, catchall: undefined } as never);
    }
    case 'array':
      return schema.clone({ ...def, element: inner('element') } as never);
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'nonoptional':
    case 'catch':
      return schema.clone({ ...def, innerType: inner('innerType') } as never);
    case 'pipe':
      return schema.clone({ ...def, in: inner('in'), out: inner('out') } as never);
    case 'union':
      return schema.clone({ ...def, options: (def.options as z.ZodType[]).map((o) => loosen(o)) } as never);
    case 'record':
      return schema.clone({ ...def, valueType: inner('valueType') } as never);
    default:
      return schema;
  }
}

export type RpcRequest<C extends RpcContract> = z.input<C['request']>;
export type RpcResponse<C extends RpcContract> = z.output<C['response']>;

/** Prefixes a subject (or stream name) with NATS_SUBJECT_PREFIX so runs sharing a server never collide. */
export function prefixed(prefix: string, subject: string): string {
  if (!prefix) return subject;
  return prefix.endsWith('.') ? `${prefix}${subject}` : `${prefix}.${subject}`;
}

/** Stream names may not contain dots; a prefix becomes an underscore-joined head. */
export function prefixedStream(prefix: string, stream: string): string {
  if (!prefix) return stream;
  return `${prefix.replace(/[^A-Za-z0-9_-]/g, '_')}_${stream}`;
}

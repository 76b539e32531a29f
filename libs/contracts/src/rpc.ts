import { z } from 'zod';

/** A request/reply subject with the schemas of both directions, imported by caller and handler. */
export interface RpcContract<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  readonly subject: string;
  readonly request: Req;
  readonly response: Res;
}

export function rpc<Req extends z.ZodType, Res extends z.ZodType>(
  subject: string,
  request: Req,
  response: Res,
): RpcContract<Req, Res> {
  return { subject, request, response };
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

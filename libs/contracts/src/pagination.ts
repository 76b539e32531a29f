import { z } from 'zod';
import { INT32_MAX, int32, queryInt, text } from './input';

export const MAX_LIMIT = 200;
export const DEFAULT_LIMIT = 50;

/** A cursor as a client sends it back: opaque text of bounded length. */
export const CursorSchema = text({ min: 1, max: 512 });

/** `limit`/`cursor` or `page`/`size`, as query strings arrive. */
export const PageQuerySchema = z
  .object({
    limit: queryInt({ min: 1, max: MAX_LIMIT }).optional(),
    cursor: CursorSchema.optional(),
    page: queryInt({ min: 1, max: INT32_MAX }).optional(),
    size: queryInt({ min: 1, max: MAX_LIMIT }).optional(),
  })
  .refine((q) => !(q.cursor && (q.page !== undefined || q.size !== undefined)), {
    message: 'use either cursor/limit or page/size',
    path: ['cursor'],
  });

export const CursorPageRequestSchema = z.object({
  kind: z.literal('cursor'),
  limit: int32({ min: 1, max: MAX_LIMIT }),
  cursor: CursorSchema.optional(),
});
export const OffsetPageRequestSchema = z.object({
  kind: z.literal('offset'),
  page: int32({ min: 1 }),
  size: int32({ min: 1, max: MAX_LIMIT }),
});
export const PageRequestSchema = z.discriminatedUnion('kind', [CursorPageRequestSchema, OffsetPageRequestSchema]);
export type PageRequest = z.infer<typeof PageRequestSchema>;

export function toPageRequest(q: z.infer<typeof PageQuerySchema>): PageRequest {
  if (q.page !== undefined || q.size !== undefined) {
    return { kind: 'offset', page: q.page ?? 1, size: q.size ?? q.limit ?? DEFAULT_LIMIT };
  }
  return { kind: 'cursor', limit: q.limit ?? DEFAULT_LIMIT, cursor: q.cursor };
}

export interface CursorPage<T> {
  items: T[];
  next_cursor: string | null;
}
export interface OffsetPage<T> {
  items: T[];
  total: number;
  page: number;
  size: number;
}
export type Page<T> = CursorPage<T> | OffsetPage<T>;

export function cursorPageSchema<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable() });
}
export function offsetPageSchema<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), total: z.number().int(), page: z.number().int(), size: z.number().int() });
}
export function pageSchema<T extends z.ZodType>(item: T) {
  return z.union([cursorPageSchema(item), offsetPageSchema(item)]);
}

/**
 * How many leading items of a page fit in `budget` bytes of JSON: at least one, so a page
 * always moves forward; the rest wait for the next cursor.
 */
export function itemsWithin(items: readonly unknown[], budget: number): number {
  let used = 0;
  for (let i = 0; i < items.length; i++) {
    used += Buffer.byteLength(JSON.stringify(items[i]));
    if (used > budget && i > 0) return i;
  }
  return items.length;
}

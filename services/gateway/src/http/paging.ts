import type { z } from 'zod';
import { toPageRequest, type PageQuerySchema, type PageRequest } from '@parley/contracts';

type PageQuery = z.output<typeof PageQuerySchema>;

/**
 * A validated query whose schemas include `PageQuerySchema`, with its paging fields
 * (`limit`, `cursor`, `page`, `size`) turned into the one `page` a list RPC takes; the
 * route's filters stay beside it.
 */
export function paged<Q extends PageQuery>(query: Q): Omit<Q, keyof PageQuery> & { page: PageRequest } {
  const { limit, cursor, page, size, ...filters } = query;
  return { ...filters, page: toPageRequest({ limit, cursor, page, size }) };
}

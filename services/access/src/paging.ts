import type { EntityManager, EntityName, FilterQuery } from '@mikro-orm/postgresql';
import { decodeCursor, encodeCursor, type Page, type PageRequest } from '@parley/contracts';

/** A list ordered by a time-ordered UUID key, with either a keyset cursor or page/size. */
export async function pageByKey<E extends object, V>(
  em: EntityManager,
  entity: EntityName<E>,
  where: FilterQuery<E>,
  key: keyof E & string,
  page: PageRequest,
  view: (row: E) => V,
): Promise<Page<V>> {
  const orderBy = { [key]: 'asc' } as never;
  if (page.kind === 'offset') {
    const [rows, total] = await em.findAndCount(entity, where as never, {
      orderBy,
      limit: page.size,
      offset: (page.page - 1) * page.size,
    });
    return { items: rows.map(view), total, page: page.page, size: page.size };
  }
  const after = page.cursor ? String(decodeCursor(page.cursor, 1)[0]) : undefined;
  const scoped = (after ? { $and: [where, { [key]: { $gt: after } }] } : where) as FilterQuery<E>;
  const rows = await em.find(entity, scoped as never, { orderBy, limit: page.limit + 1 });
  const items = rows.slice(0, page.limit);
  const last = items.at(-1);
  return {
    items: items.map(view),
    next_cursor: rows.length > page.limit && last ? encodeCursor([String(last[key])]) : null,
  };
}

import type { EntityManager, EntityName, FilterQuery } from '@mikro-orm/postgresql';
import type { Page, PageRequest } from '@parley/contracts';
import {
  keysetFilter,
  keysetOrderBy,
  type CursorBinding,
  type KeyValues,
  type Keyset,
  type KeysetList,
} from '@parley/kit/database';

/** A list ordered by one time-ordered UUID key (an entity's id, or a membership's user id), ascending. */
export function uuidKeyed(name: string, column = 'id', property?: string): KeysetList {
  return { name, keys: [{ column, property, type: 'uuid', order: 'asc' }] };
}

/** How a repository reads one list: the rows after a keyset position, or one numbered page with the total. */
export interface ListReads<Row> {
  after(position: { after?: KeyValues; take: number }): Promise<Row[]>;
  numbered(page: { offset: number; limit: number }): Promise<[Row[], number]>;
}

/** The reads of a list of one entity under a filter, in the list's key order (used by repositories). */
export function entityReads<E extends object>(
  em: () => EntityManager,
  entity: EntityName<E>,
  where: FilterQuery<E>,
  list: KeysetList,
): ListReads<E> {
  const orderBy = keysetOrderBy(list) as never;
  return {
    after: ({ after, take }) =>
      em().find(entity, (after ? { $and: [where, keysetFilter(list, after)] } : where) as never, {
        orderBy,
        limit: take,
      }),
    numbered: ({ offset, limit }) => em().findAndCount(entity, where as never, { orderBy, limit, offset }),
  };
}

/**
 * A page of an access list: by keyset with a signed cursor (bound to the caller and the
 * list's filters), or by page/size with the total.
 */
export async function pageOf<Row, View>(
  keyset: Keyset,
  list: KeysetList,
  page: PageRequest,
  bind: CursorBinding,
  reads: ListReads<Row>,
  shape: { view: (row: Row) => View; key: (row: Row) => KeyValues },
): Promise<Page<View>> {
  if (page.kind === 'offset') {
    const [rows, total] = await reads.numbered({ offset: (page.page - 1) * page.size, limit: page.size });
    return { items: rows.map(shape.view), total, page: page.page, size: page.size };
  }
  return keyset.page(list, page, bind, (position) => reads.after(position), shape);
}

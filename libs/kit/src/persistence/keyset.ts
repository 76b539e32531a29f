import { itemsWithin, type CursorPage, type Principal } from '@parley/contracts';
import { callerOf, invalidCursor, type CursorCodec } from './cursors';

export type KeyType = 'uuid' | 'timestamp' | 'int' | 'float' | 'text';

export interface KeyColumn {
  /** Column name in SQL (may be qualified, e.g. `hit.rank`). */
  column: string;
  /** Entity property for MikroORM filters, when it differs from the column. */
  property?: string;
  type: KeyType;
  order: 'asc' | 'desc';
}

/** A list ordered by unique keys: the name binds its cursors to it. */
export interface KeysetList {
  name: string;
  keys: readonly KeyColumn[];
}

/** A position in a list: one value per key column (timestamps as RFC 3339 text). */
export type KeyValues = (string | number)[];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkValue(type: KeyType, value: unknown): boolean {
  switch (type) {
    case 'uuid':
      return typeof value === 'string' && UUID.test(value);
    case 'timestamp':
      return typeof value === 'string' && value.length <= 40 && Number.isFinite(Date.parse(value));
    case 'int':
      return typeof value === 'number' && Number.isSafeInteger(value);
    case 'float':
      return typeof value === 'number' && Number.isFinite(value);
    case 'text':
      return typeof value === 'string' && value.length <= 1000;
  }
}

function sqlValue(type: KeyType, value: string | number): unknown {
  return type === 'timestamp' ? new Date(value) : value;
}

/**
 * What a cursor is bound to, beside its list: the caller and every filter and order that
 * shapes the list. Limits are not part of it (a client may change the page size).
 */
export interface CursorBinding {
  actor?: Principal;
  filters?: Record<string, unknown>;
}

export interface PageRequestOf {
  limit: number;
  cursor?: string;
}

/**
 * The one keyset pager: opens a cursor into typed key values (edited, foreign or malformed
 * cursors answer 400 INVALID_CURSOR before any query runs), hands the fetch the position to
 * read after, and seals the next cursor from the last item it keeps. SQL and MikroORM
 * callers both get the comparison built from the same key description.
 */
export class Keyset {
  constructor(private readonly codec: CursorCodec) {}

  private binding(list: KeysetList, bind: CursorBinding) {
    return { list: list.name, caller: callerOf(bind.actor), filters: bind.filters ?? {} };
  }

  /** The position a cursor stands for, or undefined without a cursor. */
  after(list: KeysetList, cursor: string | undefined, bind: CursorBinding): KeyValues | undefined {
    if (cursor === undefined) return undefined;
    const values = this.codec.open(this.binding(list, bind), cursor);
    if (values.length !== list.keys.length || !list.keys.every((k, i) => checkValue(k.type, values[i]))) {
      throw invalidCursor();
    }
    return values as KeyValues;
  }

  cursorAt(list: KeysetList, bind: CursorBinding, values: KeyValues): string {
    return this.codec.seal(this.binding(list, bind), values);
  }

  /**
   * A page: `fetch` reads up to `take` rows after the position (limit + 1, so one more tells
   * that more follow); the page keeps up to `limit` items while they fit in `budget` bytes of
   * JSON (always one) and its cursor points after the last kept item.
   */
  async page<Row, View>(
    list: KeysetList,
    request: PageRequestOf,
    bind: CursorBinding,
    fetch: (position: { after?: KeyValues; take: number }) => Promise<Row[]>,
    shape: { view: (row: Row) => View; key: (row: Row) => KeyValues; budget?: number },
  ): Promise<CursorPage<View>> {
    const after = this.after(list, request.cursor, bind);
    const rows = await fetch({ after, take: request.limit + 1 });
    const views = rows.slice(0, request.limit).map(shape.view);
    const fit = shape.budget === undefined ? views.length : itemsWithin(views, shape.budget);
    const last = rows[fit - 1];
    return {
      items: views.slice(0, fit),
      next_cursor: rows.length > fit && last !== undefined ? this.cursorAt(list, bind, shape.key(last)) : null,
    };
  }

  /**
   * A page whose rows the fetch already cut to size (by bytes in SQL, say) and that knows
   * whether more follow.
   */
  async fitted<Row, View>(
    list: KeysetList,
    request: PageRequestOf,
    bind: CursorBinding,
    fetch: (position: { after?: KeyValues; take: number }) => Promise<{ rows: Row[]; more: boolean }>,
    shape: { view: (row: Row) => View; key: (row: Row) => KeyValues },
  ): Promise<CursorPage<View>> {
    const after = this.after(list, request.cursor, bind);
    const { rows, more } = await fetch({ after, take: request.limit });
    const last = rows.at(-1);
    return {
      items: rows.map(shape.view),
      next_cursor: more && last !== undefined ? this.cursorAt(list, bind, shape.key(last)) : null,
    };
  }
}

/** `order by` text for a list's keys. */
export function keysetOrderSql(list: KeysetList): string {
  return list.keys.map((k) => `${k.column} ${k.order}`).join(', ');
}

/** MikroORM `orderBy` for a list's keys. */
export function keysetOrderBy(list: KeysetList): Record<string, 'asc' | 'desc'> {
  return Object.fromEntries(list.keys.map((k) => [k.property ?? k.column, k.order]));
}

/**
 * The SQL condition "after this position" with its bind parameters: a row comparison when
 * every key runs the same way, otherwise the expanded form.
 */
export function keysetSql(list: KeysetList, after: KeyValues): { sql: string; params: unknown[] } {
  const keys = list.keys;
  const values = keys.map((k, i) => sqlValue(k.type, after[i] as string | number));
  const op = (k: KeyColumn) => (k.order === 'asc' ? '>' : '<');
  if (keys.every((k) => k.order === keys[0]?.order)) {
    const cols = keys.map((k) => k.column).join(', ');
    const marks = keys.map(() => '?').join(', ');
    return { sql: `(${cols}) ${op(keys[0] as KeyColumn)} (${marks})`, params: values };
  }
  const clauses: string[] = [];
  const params: unknown[] = [];
  keys.forEach((key, i) => {
    const equal = keys.slice(0, i).map((k) => `${k.column} = ?`);
    clauses.push(`(${[...equal, `${key.column} ${op(key)} ?`].join(' and ')})`);
    params.push(...values.slice(0, i), values[i]);
  });
  return { sql: `(${clauses.join(' or ')})`, params };
}

/** The same condition as a MikroORM filter on the entity's properties. */
export function keysetFilter(list: KeysetList, after: KeyValues): Record<string, unknown> {
  const keys = list.keys;
  const prop = (k: KeyColumn) => k.property ?? k.column;
  const value = (i: number) => sqlValue((keys[i] as KeyColumn).type, after[i] as string | number);
  const branches = keys.map((key, i) => ({
    ...Object.fromEntries(keys.slice(0, i).map((k, j) => [prop(k), value(j)])),
    [prop(key)]: { [key.order === 'asc' ? '$gt' : '$lt']: value(i) },
  }));
  return branches.length === 1 ? (branches[0] as Record<string, unknown>) : { $or: branches };
}

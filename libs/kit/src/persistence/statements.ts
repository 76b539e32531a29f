import { createHash } from 'node:crypto';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { Pool, QueryResultRow } from 'pg';

/**
 * Statements on the request path that run many times a second, with bind parameters, as
 * prepared statements: PostgreSQL parses and plans each once per pooled connection instead of
 * on every call. `em.execute` writes the values into the SQL text, so every call is a new
 * statement to parse and plan (about half of the database's time for the message append).
 *
 * The text is written with `?` placeholders like the rest of the repositories' SQL; a `?`
 * inside a quoted literal is left alone. Each distinct text gets its own name, derived from
 * it, so variants of one query (ascending, descending) are prepared apart.
 */
interface Prepared {
  name: string;
  text: string;
}

const prepared = new Map<string, Prepared>();
const MAX_PREPARED = 500;

/** `?` → `$1`, `$2`, … outside single-quoted literals. */
export function numberPlaceholders(sql: string): string {
  let n = 0;
  let quoted = false;
  let out = '';
  for (const c of sql) {
    if (c === "'") quoted = !quoted;
    out += c === '?' && !quoted ? `$${++n}` : c;
  }
  return out;
}

function preparedOf(sql: string): Prepared {
  let entry = prepared.get(sql);
  if (!entry) {
    // A caller building texts without bound would fill every connection with statements.
    if (prepared.size >= MAX_PREPARED) throw new Error('too many distinct prepared statements');
    entry = {
      name: `parley_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`,
      text: numberPlaceholders(sql),
    };
    prepared.set(sql, entry);
  }
  return entry;
}

const pools = new WeakMap<MikroORM, Promise<Pool>>();

/** The pg pool under the ORM (the same connections, settings and statement timeout). */
function poolOf(orm: MikroORM): Promise<Pool> {
  let pool = pools.get(orm);
  if (!pool) {
    pool = orm.em.getConnection().getNativeClient() as Promise<Pool>;
    pools.set(orm, pool);
  }
  return pool;
}

/**
 * Runs `sql` (with `?` placeholders) as a prepared statement on a pooled connection; answers
 * its rows, or throws what the ORM would (its exception classes).
 */
export async function runPrepared<T extends QueryResultRow = Record<string, unknown>>(
  orm: MikroORM,
  sql: string,
  values: unknown[],
): Promise<T[]> {
  const { name, text } = preparedOf(sql);
  const pool = await poolOf(orm);
  try {
    return (await pool.query<T>({ name, text, values })).rows;
  } catch (error) {
    // The same exceptions as the ORM's own queries (a unique violation, a timeout, …).
    throw error instanceof Error ? orm.em.getDriver().convertException(error) : error;
  }
}

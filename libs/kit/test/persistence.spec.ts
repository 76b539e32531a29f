import { Migration } from '@mikro-orm/migrations';
import { UniqueConstraintViolationException, defineEntity, p } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { createLogger, toParleyError } from '../src';
import {
  allowLongStatements,
  CursorCodec,
  CursorKeyring,
  CursorKeysMigration,
  Keyset,
  createOrm,
  migrateUnderLock,
  numberPlaceholders,
  pendingMigrations,
  runPrepared,
  type KeysetList,
} from '../src/database';
import { DATABASE_URL, cleanupRun, runId } from '../../../test/support/stack';

const logger = createLogger('kit-test', 'silent');
const id = runId('orm');

const Widget = defineEntity({
  name: 'Widget',
  tableName: 'widgets',
  properties: { id: p.integer().primary(), name: p.string() },
});

class CreateWidgets extends Migration {
  override up(): void {
    // Slow enough that a second instance arrives while the first still holds the lock.
    this.addSql('select pg_sleep(0.5)');
    this.addSql('create table "widgets" ("id" int primary key, "name" varchar(255) not null)');
  }
}

const options = (schema: string) => ({
  url: DATABASE_URL,
  schema,
  entities: [Widget],
  migrations: [{ name: 'CreateWidgets', class: CreateWidgets }],
});

describe(migrateUnderLock.name, () => {
  afterAll(() => cleanupRun(id));

  it('applies migrations once when instances start together, in the schema it is given', async () => {
    const schema = `${id}_one`;
    const orms = await Promise.all([0, 1, 2].map(() => createOrm(options(schema))));
    try {
      const applied = await Promise.all(orms.map((orm) => migrateUnderLock(orm, options(schema), logger)));
      expect(applied.flat()).toEqual(['CreateWidgets']);
      for (const orm of orms) expect(await pendingMigrations(orm)).toBe(0);
      const em = orms[0].em.fork();
      em.create(Widget, { id: 1, name: 'sprocket' });
      await em.flush();
    } finally {
      await Promise.all(orms.map((orm) => orm.close()));
    }
    const pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    try {
      const { rows } = await pg.query(`select name from "${schema}".widgets`);
      expect(rows).toEqual([{ name: 'sprocket' }]);
      const tracked = await pg.query(`select count(*)::int as n from "${schema}".mikro_orm_migrations`);
      expect(tracked.rows[0].n).toBe(1);
      const stray = await pg.query(
        `select count(*)::int as n from information_schema.tables where table_schema = 'public' and table_name = 'widgets'`,
      );
      expect(stray.rows[0].n).toBe(0);
    } finally {
      await pg.end();
    }
  });

  it('serves two schemas from the same migrations', async () => {
    for (const schema of [`${id}_two`, `${id}_three`]) {
      const orm = await createOrm(options(schema));
      try {
        expect(await pendingMigrations(orm)).toBe(1);
        await migrateUnderLock(orm, options(schema), logger);
        expect(await pendingMigrations(orm)).toBe(0);
      } finally {
        await orm.close();
      }
    }
  });
});

describe(CursorKeyring.name, () => {
  const keysOptions = (schema: string) => ({
    url: DATABASE_URL,
    schema,
    entities: [Widget],
    migrations: [{ name: 'CursorKeys', class: CursorKeysMigration }],
  });
  const LIST: KeysetList = { name: 'widgets', keys: [{ column: 'id', type: 'int', order: 'asc' }] };
  const bind = { filters: { colour: 'red' } };

  async function instance(schema: string, secret?: string) {
    const orm = await createOrm(keysOptions(schema));
    await migrateUnderLock(orm, keysOptions(schema), logger);
    const ring = new CursorKeyring(orm, secret, logger);
    await ring.start();
    return { orm, ring, keyset: new Keyset(new CursorCodec(ring)) };
  }

  it('makes one key for instances starting together; a cursor from one opens on another and after a restart', async () => {
    const schema = `${id}_keys`;
    const [a, b] = await Promise.all([instance(schema), instance(schema)]);
    const cursor = a.keyset.cursorAt(LIST, bind, [41]);
    expect(b.keyset.after(LIST, cursor, bind)).toEqual([41]);
    await Promise.all([a, b].map((i) => (i.ring.stop(), i.orm.close())));
    const again = await instance(schema);
    try {
      expect(again.keyset.after(LIST, cursor, bind)).toEqual([41]);
      const pg = new Client({ connectionString: DATABASE_URL });
      await pg.connect();
      const { rows } = await pg.query(`select count(*)::int as n from "${schema}".cursor_keys`);
      await pg.end();
      expect(rows[0].n).toBe(1);
    } finally {
      again.ring.stop();
      await again.orm.close();
    }
  });

  it('signs with CURSOR_SECRET once set, and the previous key still verifies', async () => {
    const schema = `${id}_rotate`;
    const first = await instance(schema);
    const before = first.keyset.cursorAt(LIST, bind, [7]);
    first.ring.stop();
    await first.orm.close();
    const second = await instance(schema, 'a secret of at least sixteen characters');
    const third = await instance(schema, 'a secret of at least sixteen characters');
    try {
      const after = second.keyset.cursorAt(LIST, bind, [8]);
      expect(after.split('.')[0]).not.toBe(before.split('.')[0]);
      expect(third.keyset.cursorAt(LIST, bind, [8])).toBe(after);
      expect(second.keyset.after(LIST, before, bind)).toEqual([7]);
      expect(third.keyset.after(LIST, after, bind)).toEqual([8]);
      await third.ring.rotate();
      expect(third.keyset.after(LIST, after, bind)).toEqual([8]);
      expect(() => third.keyset.after(LIST, `${after.slice(0, -1)}${after.endsWith('x') ? 'y' : 'x'}`, bind)).toThrow(
        'cursor',
      );
    } finally {
      for (const i of [second, third]) {
        i.ring.stop();
        await i.orm.close();
      }
    }
  });
});

describe('statement timeouts', () => {
  afterAll(() => cleanupRun(id));
  const timed = (schema: string, poolMax: number) => ({
    ...options(schema),
    poolMax,
    statementTimeoutMs: 200,
    backgroundStatementTimeoutMs: 10_000,
  });

  it('gives every pooled connection the request timeout, and migrations the background one', async () => {
    const schema = `${id}_timed`;
    const orm = await createOrm(timed(schema, 4));
    try {
      // The migration sleeps 0.5 s, past the request timeout: it runs under the background one.
      expect(await migrateUnderLock(orm, timed(schema, 4), logger)).toEqual(['CreateWidgets']);
      // Four transactions at once hold four connections of the pool; each has the timeout.
      const seen = await Promise.all(
        [0, 1, 2, 3].map(() =>
          orm.em.fork().transactional(async (tx) => {
            const [row] = await tx.execute<{ pid: number; timeout: string }[]>(
              `select pg_backend_pid() as pid, current_setting('statement_timeout') as timeout, pg_sleep(0.05)`,
            );
            return row;
          }),
        ),
      );
      expect(new Set(seen.map((r) => r.pid)).size).toBe(4);
      expect(seen.map((r) => r.timeout)).toEqual(['200ms', '200ms', '200ms', '200ms']);

      const slow = await orm.em
        .fork()
        .execute('select pg_sleep(0.5)')
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(slow).toBeDefined();
      expect(toParleyError(slow).toPayload()).toMatchObject({ code: 'QUERY_TIMEOUT', status: 503, retryable: true });
    } finally {
      await orm.close();
    }
  });

  it('lifts the timeout inside background work only, until its transaction ends', async () => {
    const schema = `${id}_timed`;
    const orm = await createOrm(timed(schema, 1));
    try {
      const pids = await orm.em.fork().transactional(async (tx) => {
        await allowLongStatements(tx);
        const [row] = await tx.execute<{ pid: number; timeout: string }[]>(
          `select pg_backend_pid() as pid, current_setting('statement_timeout') as timeout, pg_sleep(0.5)`,
        );
        expect(row.timeout).toBe('10s');
        return row.pid;
      });
      // The pool's one connection comes back with the request timeout.
      const [after] = await orm.em
        .fork()
        .execute<{ pid: number; timeout: string }[]>(
          `select pg_backend_pid() as pid, current_setting('statement_timeout') as timeout`,
        );
      expect(after).toEqual({ pid: pids, timeout: '200ms' });
      await expect(orm.em.fork().execute('select 1')).resolves.toBeDefined();
      await expect(allowLongStatements(orm.em.fork())).rejects.toThrow(/inside a transaction/);
    } finally {
      await orm.close();
    }
  });
});

describe(runPrepared.name, () => {
  afterAll(() => cleanupRun(id));

  it('numbers placeholders outside literals', () => {
    expect(numberPlaceholders(`select ?, '?' || ?, 'it''s ?' from t where a = ?`)).toBe(
      `select $1, '?' || $2, 'it''s ?' from t where a = $3`,
    );
  });

  it('runs a prepared statement with bind parameters, and throws the ORM exceptions', async () => {
    const schema = `${id}_prep`;
    const orm = await createOrm(options(schema));
    try {
      await migrateUnderLock(orm, options(schema), logger);
      const insert = 'insert into widgets (id, name) values (?, ?) returning id, name';
      // A value that would need quoting in SQL text travels as a parameter.
      expect(await runPrepared(orm, insert, [1, "it's ?"])).toEqual([{ id: 1, name: "it's ?" }]);
      for (let i = 2; i <= 20; i++) await runPrepared(orm, insert, [i, `w${i}`]);
      await expect(runPrepared(orm, insert, [1, 'again'])).rejects.toBeInstanceOf(UniqueConstraintViolationException);
      const [{ n }] = await runPrepared<{ n: number }>(orm, 'select count(*)::int as n from widgets', []);
      expect(n).toBe(20);
    } finally {
      await orm.close();
    }
  });
});

import { Migration } from '@mikro-orm/migrations';
import { defineEntity, p } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import {
  CursorCodec,
  CursorKeyring,
  CursorKeysMigration,
  Keyset,
  createLogger,
  createOrm,
  migrateUnderLock,
  pendingMigrations,
  type KeysetList,
} from '../src';
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

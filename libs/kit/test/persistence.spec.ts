import { Migration } from '@mikro-orm/migrations';
import { defineEntity, p } from '@mikro-orm/postgresql';
import { Client } from 'pg';
import { createLogger, createOrm, migrateUnderLock, pendingMigrations } from '../src';
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

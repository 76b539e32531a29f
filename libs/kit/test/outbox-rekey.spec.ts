import { Client } from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { outboxRekeySql } from '../src/ops/plan';
import { DATABASE_URL, cleanupRun, runId } from '../../../test/support/stack';

/** A restore gives every outbox row a new id (its Nats-Msg-Id) in the same order (decisions/0025). */
describe('outbox renumbering at a restore', () => {
  const id = runId('rek');
  const schema = `${id}_outbox`;
  let pg: Client;

  beforeAll(async () => {
    pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
  });
  afterAll(async () => {
    await pg.end();
    await cleanupRun(id);
  });

  it('changes every id, keeps their order (many share a millisecond) and leaves the rest of the row', async () => {
    await pg.query(`create schema "${schema}"`);
    await pg.query(
      `create table "${schema}".outbox (id uuid primary key, subject varchar(255) not null, n int not null)`,
    );
    // Ids as the services make them: UUIDv7, thousands in the same few milliseconds.
    const ids = Array.from({ length: 5000 }, () => uuidv7());
    await pg.query(
      `insert into "${schema}".outbox (id, subject, n) select id, 'evt.x', n from unnest($1::uuid[]) with ordinality as t(id, n)`,
      [ids],
    );
    const before = (await pg.query<{ id: string; n: number }>(`select id, n from "${schema}".outbox order by id`)).rows;
    expect(before.map((r) => r.n)).toEqual(ids.map((_, i) => i + 1));

    await pg.query(outboxRekeySql(schema));
    const after = (
      await pg.query<{ id: string; n: number; subject: string }>(`select * from "${schema}".outbox order by id`)
    ).rows;
    expect(after.map((r) => r.n)).toEqual(before.map((r) => r.n));
    const old = new Set(ids);
    expect(after.filter((r) => old.has(r.id))).toEqual([]);
    expect(new Set(after.map((r) => r.id)).size).toBe(ids.length);
    for (const [i, row] of after.entries()) {
      // The same time (first 48 bits), version 7, the RFC 4122 variant.
      expect(row.id.slice(0, 13)).toBe(before[i].id.slice(0, 13));
      expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    }
    // A schema without an outbox is left alone.
    await pg.query(`create schema "${schema}_none"`);
    await pg.query(outboxRekeySql(`${schema}_none`));
  });
});

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { migrations } from '../src/migrations';
import { DATABASE_URL, ROOT, cleanupRun, runId } from '../../../test/support/stack';

const run = promisify(execFile);

/**
 * N instances starting at once (a rolling upgrade, a scale-out) migrate a fresh schema exactly
 * once: two `main.js migrate` processes of the built service race on the advisory lock.
 */
describe('migrations from two processes at once', () => {
  const id = runId('mig');
  afterAll(() => cleanupRun(id));

  it('applies each migration once, and both processes succeed', async () => {
    const env = { ...process.env, DATABASE_URL, DB_SCHEMA_PREFIX: `${id}_`, LOG_LEVEL: 'info', NODE_OPTIONS: '' };
    const migrate = () =>
      run(process.execPath, ['dist/main.js', 'migrate'], { cwd: join(ROOT, 'services', 'message'), env });
    const [a, b] = await Promise.all([migrate(), migrate()]);
    // One of them applied everything; the other waited for the lock and found nothing to do.
    const applied = [a, b].map((r) => r.stdout.includes('migrations applied'));
    expect(applied.sort()).toEqual([false, true]);

    const pg = new Client({ connectionString: DATABASE_URL });
    await pg.connect();
    try {
      const { rows } = await pg.query<{ name: string; n: number }>(
        `select name, count(*)::int as n from "${id}_message".mikro_orm_migrations group by name order by name`,
      );
      expect(rows.map((r) => r.name).sort()).toEqual(migrations.map((m) => m.name).sort());
      expect(rows.every((r) => r.n === 1)).toBe(true);
    } finally {
      await pg.end();
    }
  });
});

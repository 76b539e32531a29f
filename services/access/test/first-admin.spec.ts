import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  DATABASE_URL,
  NATS_URL,
  ROOT,
  cleanupRun,
  freePort,
  runId,
  startService,
  stopService,
  tail,
} from '../../../test/support/stack';

const id = runId('admin');

describe('the first administrator', () => {
  afterAll(() => cleanupRun(id));

  it('is never a default: with no admin and the variables empty (as compose passes them), access stops and says so', async () => {
    const logDir = join(ROOT, '.parley', 'test-logs', id);
    mkdirSync(logDir, { recursive: true });
    const access = startService(
      'access',
      {
        ...process.env,
        DATABASE_URL,
        NATS_URL,
        DB_SCHEMA_PREFIX: `${id}_`,
        NATS_SUBJECT_PREFIX: id,
        ACCESS_HTTP_PORT: String(await freePort()),
        PARLEY_ADMIN_USERNAME: '',
        PARLEY_ADMIN_PASSWORD: '',
      },
      logDir,
    );
    try {
      const code = await new Promise<number | null>((resolve) => access.process.once('exit', resolve));
      expect(code).not.toBe(0);
      expect(tail(access.log, 60)).toContain(
        'no administrator exists: set PARLEY_ADMIN_USERNAME and PARLEY_ADMIN_PASSWORD to create the first one',
      );
    } finally {
      await stopService(access);
    }
  });
});

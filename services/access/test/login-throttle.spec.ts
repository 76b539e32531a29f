import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { AccessRpc, type Principal } from '@parley/contracts';
import { RpcClient, createServiceApp, startServing } from '@parley/kit';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config';
import { UsersService } from '../src/users/users.service';
import { DATABASE_URL, NATS_URL, cleanupRun, freePort, runId } from '../../../test/support/stack';

/**
 * The access service with Redis out of reach (nothing listens on its port): logins neither fail
 * nor lock anyone out; each instance counts in its own memory, and the addresses users signed in
 * from (kept in PostgreSQL) still let them past the per-username ceiling.
 */
describe('login throttling with Redis away', () => {
  const id = runId('lgr');
  let app: INestApplication;
  let rpc: RpcClient;
  let root: Principal;

  const login = (username: string, password: string, client_address: string) =>
    rpc.call(AccessRpc.login, { username, password, client_address });

  beforeAll(async () => {
    const config = loadConfig({
      DATABASE_URL,
      NATS_URL,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      DB_SCHEMA_PREFIX: `${id}_`,
      NATS_SUBJECT_PREFIX: id,
      LOG_LEVEL: 'silent',
      PARLEY_ADMIN_USERNAME: 'root',
      PARLEY_ADMIN_PASSWORD: 'root-password-1',
      LOGIN_MAX_FAILURES: '3',
      LOGIN_MAX_FAILURES_PER_USER: '6',
    });
    app = await createServiceApp(AppModule.forRoot(config), { logger: false });
    await startServing(app);
    rpc = app.get(RpcClient);
    const rootUser = await app.get(UsersService).findByUsername('root');
    if (!rootUser) throw new Error('no bootstrap admin');
    root = { type: 'user', id: rootUser.id, is_admin: true };
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await cleanupRun(id);
  });

  it('counts failures per username and address in memory, refusing that pair only', async () => {
    await rpc.call(AccessRpc.createUser, { actor: root, username: 'alice', password: 'alice-password' });
    for (let i = 0; i < 3; i++) {
      await expect(login('alice', 'wrong-password', '203.0.113.5')).rejects.toMatchObject({
        code: 'INVALID_CREDENTIALS',
      });
    }
    await expect(login('alice', 'alice-password', '203.0.113.5')).rejects.toMatchObject({
      code: 'RATE_LIMITED',
      retryAfter: expect.any(Number),
    });
    await expect(login('alice', 'alice-password', '::ffff:198.51.100.5')).resolves.toMatchObject({
      token_type: 'Bearer',
    });
  });

  it('lets a known address past the per-username ceiling', async () => {
    await rpc.call(AccessRpc.createUser, { actor: root, username: 'bob', password: 'bob-password' });
    await expect(login('bob', 'bob-password', '2001:db8:7::1')).resolves.toMatchObject({ token_type: 'Bearer' });
    for (const address of ['203.0.113.20', '203.0.113.21', '203.0.113.22']) {
      for (let i = 0; i < 2; i++) {
        await expect(login('bob', 'wrong-password', address)).rejects.toMatchObject({ code: 'INVALID_CREDENTIALS' });
      }
    }
    await expect(login('bob', 'bob-password', '203.0.113.23')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    // Same /64 as the address bob signed in from.
    await expect(login('bob', 'bob-password', '2001:db8:7:0:abcd::9')).resolves.toMatchObject({
      token_type: 'Bearer',
    });
  });
});

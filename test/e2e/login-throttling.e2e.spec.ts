import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  ROOT,
  cleanupRun,
  freePort,
  runId,
  startService,
  startStack,
  stopService,
  stopStack,
  waitReady,
  type RunningService,
  type Stack,
} from '../support/stack';

/**
 * Login throttling through the gateway, on a stack of its own with low limits: a username may
 * fail 3 times from one address (IPv6: its /64) and 6 times from all addresses together. Its
 * gateway trusts X-Forwarded-For from loopback (it plays the proxy); a second gateway on the
 * same services has no TRUST_PROXY.
 */
describe('login throttling (e2e)', () => {
  const id = runId('lgn');
  const adminPassword = randomBytes(12).toString('base64url');
  const password = 'correct-horse-battery';
  let stack: Stack;
  let plain: RunningService | undefined;
  let proxied: string;
  let direct: string;
  let admin: string;

  const login = async (base: string, username: string, pass: string, forwardedFor?: string) => {
    const res = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor }),
      },
      body: JSON.stringify({ username, password: pass }),
    });
    const body = (await res.json()) as { access_token?: string; code?: string };
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body };
  };
  let counter = 0;
  const newUser = async () => {
    const username = `${id}-${counter++}`;
    const res = await fetch(`${proxied}/api/v1/users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    if (res.status !== 201) throw new Error(`create user failed: ${res.status} ${await res.text()}`);
    return username;
  };
  /** Fails `times` logins for the user through `base`, each expected to be a plain 401. */
  const fail = async (base: string, username: string, times: number, forwardedFor: (i: number) => string) => {
    for (let i = 0; i < times; i++) {
      const res = await login(base, username, 'wrong-password', forwardedFor(i));
      expect(res.status).toBe(401);
    }
  };
  const expectThrottled = (res: { status: number; retryAfter: string | null; body: { code?: string } }) => {
    expect(res.status).toBe(429);
    expect(res.body.code).toBe('RATE_LIMITED');
    expect(Number(res.retryAfter)).toBeGreaterThan(0);
  };

  beforeAll(async () => {
    stack = await startStack(
      id,
      {
        PARLEY_ADMIN_USERNAME: 'admin',
        PARLEY_ADMIN_PASSWORD: adminPassword,
        LOG_LEVEL: 'warn',
        LOGIN_MAX_FAILURES: '3',
        LOGIN_MAX_FAILURES_PER_USER: '6',
      },
      { gateway: { TRUST_PROXY: '127.0.0.1,::1' } },
    );
    proxied = `http://127.0.0.1:${stack.services.get('gateway')?.port}`;
    const logDir = join(ROOT, '.parley', 'test-logs', id, 'plain');
    mkdirSync(logDir, { recursive: true });
    plain = startService('gateway', { ...stack.env, GATEWAY_PORT: String(await freePort()) }, logDir);
    await waitReady(plain);
    direct = `http://127.0.0.1:${plain.port}`;
    const res = await login(proxied, 'admin', adminPassword);
    if (!res.body.access_token) throw new Error(`admin login failed: ${res.status}`);
    admin = res.body.access_token;
  }, 180_000);

  afterAll(async () => {
    if (plain) await stopService(plain);
    if (stack) await stopStack(stack);
    await cleanupRun(id);
  });

  it("stops an attacker's address, not the user signing in from another", async () => {
    const username = await newUser();
    // The proxy appends the address it saw; whatever the client wrote to its left is not believed.
    await fail(proxied, username, 3, (i) => `10.${i}.0.1, 203.0.113.5`);
    expectThrottled(await login(proxied, username, password, '203.0.113.5'));
    expectThrottled(await login(proxied, username, 'wrong-password', '192.0.2.77, 203.0.113.5'));

    const elsewhere = await login(proxied, username, password, '198.51.100.5');
    expect(elsewhere.status).toBe(200);
    expect(elsewhere.body.access_token).toEqual(expect.any(String));
  });

  it('counts an IPv6 client as its /64', async () => {
    const username = await newUser();
    await fail(proxied, username, 3, (i) => `2001:db8:5:6::${i + 1}`);
    expectThrottled(await login(proxied, username, password, '2001:db8:5:6:ffff::1'));
    expect((await login(proxied, username, password, '2001:db8:5:7::1')).status).toBe(200);
  });

  it('ignores X-Forwarded-For without TRUST_PROXY: the failures count against the socket address', async () => {
    const username = await newUser();
    // Each attempt claims another address; the gateway sees 127.0.0.1 every time.
    await fail(direct, username, 3, (i) => `198.51.100.${100 + i}`);
    expectThrottled(await login(direct, username, password, '198.51.100.200'));
    // The same user from another address (through the proxy) is not locked out.
    expect((await login(proxied, username, password, '198.51.100.200')).status).toBe(200);
  });

  it('past the per-username ceiling, slows a new address but not one the user signed in from before', async () => {
    const username = await newUser();
    expect((await login(proxied, username, password, '192.0.2.10')).status).toBe(200);
    // Six failures from three addresses: no address has reached 3, the username has reached 6.
    await fail(proxied, username, 6, (i) => `203.0.113.${50 + Math.floor(i / 2)}`);

    const fresh = await login(proxied, username, password, '198.51.100.60');
    expectThrottled(fresh);
    expect(Number(fresh.retryAfter)).toBeGreaterThan(15 * 60);
    expect((await login(proxied, username, password, '192.0.2.10')).status).toBe(200);
  });
});

import {
  CredentialsError,
  CredentialsRenewer,
  REFUSED_RETRY_MS,
  RENEW_RETRY_CAP_MS,
  lifetimeMs,
  parseCreds,
  resolveCredentialsOptions,
  type IssuedCredentials,
} from './credentials';

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const jwt = (claims: Record<string, unknown>) => `${b64({ typ: 'JWT', alg: 'ed25519-nkey' })}.${b64(claims)}.sig`;
const credsFile = (token: string) =>
  [
    '-----BEGIN NATS USER JWT-----',
    token,
    '------END NATS USER JWT------',
    '',
    '************************* IMPORTANT *************************',
    '',
    '-----BEGIN USER NKEY SEED-----',
    'SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY',
    '------END USER NKEY SEED------',
    '',
  ].join('\n');

describe('parseCreds', () => {
  it('finds the JWT and the seed of a credentials file', () => {
    const token = jwt({ iat: 1, exp: 2 });
    expect(parseCreds(credsFile(token))).toEqual({
      jwt: token,
      seed: 'SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY',
    });
  });

  it('refuses text that is not one', () => {
    expect(parseCreds('hello')).toBeUndefined();
    expect(parseCreds(credsFile('not-a-jwt'))).toBeUndefined();
  });
});

describe('lifetimeMs', () => {
  const now = 1_800_000_000_500;
  const iat = Math.floor(now / 1000);

  it('is the time left until exp when the clocks agree', () => {
    // iat was rounded down by 500 ms: the credentials have 3 s - 0.5 s left.
    expect(lifetimeMs(jwt({ iat, exp: iat + 3 }), new Date((iat + 3) * 1000), now)).toBe(2500);
  });

  it('is the span of the JWT when the local clock runs ahead past exp', () => {
    expect(lifetimeMs(jwt({ iat, exp: iat + 3600 }), new Date(0), now + 7200_000)).toBe(3_600_000);
  });

  it('is bounded by the JWT span when the local clock runs behind', () => {
    expect(lifetimeMs(jwt({ iat, exp: iat + 60 }), new Date((iat + 60) * 1000), now - 3_600_000)).toBe(60_000);
  });

  it('falls back to expires_at without exp, and never expires without either', () => {
    expect(lifetimeMs(jwt({ iat }), new Date(now + 10_000), now)).toBe(10_000);
    expect(lifetimeMs(jwt({ iat }), new Date('nonsense'), now)).toBe(Infinity);
  });
});

describe('resolveCredentialsOptions', () => {
  it('fills the defaults and names every bad option', () => {
    expect(resolveCredentialsOptions({ gatewayUrl: 'http://127.0.0.1:8080', apiKey: 'k' })).toMatchObject({
      renewAfter: 2 / 3,
      timeoutMs: 10_000,
    });
    expect(() =>
      resolveCredentialsOptions({ gatewayUrl: 'nats://x', apiKey: '', ttlSeconds: 86_401, renewAfter: 1 }),
    ).toThrow(/gatewayUrl.*apiKey.*ttlSeconds.*renewAfter/);
  });
});

describe('CredentialsRenewer', () => {
  const issued = (lifetime: number): IssuedCredentials => ({
    creds: 'c',
    publicKey: 'U',
    expiresAt: new Date(Date.now() + lifetime),
    inboxPrefix: '_INBOX_x',
    publish: [],
    subscribe: [],
    lifetimeMs: lifetime,
    receivedAt: Date.now(),
  });

  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('renews after the share of the lifetime, and retries failures quickly enough to beat expiry', async () => {
    const failures: number[] = [];
    const renewed: IssuedCredentials[] = [];
    let calls = 0;
    const renewer = new CredentialsRenewer(
      issued(3000),
      async () => {
        calls++;
        if (calls <= 2) {
          throw new CredentialsError({ code: 'UPSTREAM_UNAVAILABLE', status: 503, detail: 'down', retryable: true });
        }
        return issued(3000);
      },
      2 / 3,
      { renewed: (c) => renewed.push(c), failed: (_e, retryIn) => failures.push(retryIn) },
    );
    renewer.start();
    await jest.advanceTimersByTimeAsync(1999);
    expect(calls).toBe(0);
    await jest.advanceTimersByTimeAsync(1);
    expect(calls).toBe(1);
    await jest.advanceTimersByTimeAsync(1000);
    expect(calls).toBe(3);
    expect(renewed).toHaveLength(1);
    // Two retries fit in the second the credentials had left.
    expect(failures.every((ms) => ms > 0 && ms <= 250)).toBe(true);
    renewer.stop();
  });

  it('asks again only every minute after a refusal, and backs off to at most 30 s otherwise', async () => {
    const waits: { ms: number; retryable: boolean }[] = [];
    let refuse = true;
    const renewer = new CredentialsRenewer(
      issued(3_600_000),
      async () => {
        throw refuse
          ? new CredentialsError({ code: 'FORBIDDEN', status: 403, detail: 'disabled', retryable: false })
          : new CredentialsError({ code: 'UPSTREAM_TIMEOUT', status: 504, detail: 'slow', retryable: true });
      },
      2 / 3,
      { renewed: () => undefined, failed: (e, ms) => waits.push({ ms, retryable: e.retryable }) },
    );
    renewer.start();
    await jest.advanceTimersByTimeAsync(2_400_000);
    expect(waits).toEqual([{ ms: REFUSED_RETRY_MS, retryable: false }]);
    refuse = false;
    await jest.advanceTimersByTimeAsync(3_600_000);
    const later = waits.slice(1).map((w) => w.ms);
    expect(later.length).toBeGreaterThan(5);
    expect(Math.max(...later)).toBeLessThanOrEqual(RENEW_RETRY_CAP_MS);
    renewer.stop();
  });
});

import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { ParleyError } from '@parley/contracts';
import type { RpcClient } from '@parley/kit';
import { TokenVerifier } from './token-verifier';

/** The access service's two answers, counted: the keys and a user's state. */
async function fixture() {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA' };
  const calls = { jwks: 0, state: 0 };
  const rpc = {
    call: (contract: { subject: string }) => {
      if (contract.subject.endsWith('jwks')) {
        calls.jwks++;
        return Promise.resolve({ keys: [jwk] });
      }
      calls.state++;
      return Promise.resolve({ id: 'u', enabled: true, is_admin: false });
    },
  } as unknown as RpcClient;
  const sign = (expiresInSeconds: number) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setSubject('0190a000-0000-7000-8000-000000000001')
      .setIssuer('parley-access')
      .setAudience('parley')
      .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
      .sign(privateKey);
  return { verifier: new TokenVerifier(rpc), sign, calls };
}

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (error: unknown) => (error instanceof ParleyError ? `${error.code}: ${error.detail}` : String(error)),
  );

describe(TokenVerifier.name, () => {
  afterEach(() => jest.useRealTimers());

  it('checks a signature once per token, and still refuses the token once it expires', async () => {
    const { verifier, sign, calls } = await fixture();
    const token = await sign(60);
    expect((await verifier.verify(token)).id).toBe('0190a000-0000-7000-8000-000000000001');
    expect(await codeOf(verifier.verify(token))).toBe('ok');
    jest.useFakeTimers({ now: Date.now() + 61_000 });
    expect(await codeOf(verifier.verify(token))).toBe('UNAUTHENTICATED: the access token has expired');
    expect(calls.jwks).toBe(1);
  });

  it('never takes an edited token for the one it saw', async () => {
    const { verifier, sign } = await fixture();
    const token = await sign(60);
    await verifier.verify(token);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const edited = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`;
    expect(await codeOf(verifier.verify(edited))).toBe('UNAUTHENTICATED: the access token is not valid');
  });
});

import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { ParleyError } from '@parley/contracts';
import type { RpcClient } from '@parley/kit';
import { TokenVerifier } from './token-verifier';

/** The access service's two answers, counted: the keys and a user's state. */
async function fixture(stateAnswer?: () => Promise<{ id: string; enabled: boolean; is_admin: boolean } | null>) {
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
      return stateAnswer ? stateAnswer() : Promise.resolve({ id: 'u', enabled: true, is_admin: false });
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

  describe("a user's state", () => {
    /** Answers the access service has not given yet, in the order they were asked for. */
    function pendingAnswers() {
      const waiting: Array<(state: { id: string; enabled: boolean; is_admin: boolean } | Error) => void> = [];
      const ask = () =>
        new Promise<{ id: string; enabled: boolean; is_admin: boolean }>((resolve, reject) => {
          waiting.push((state) => (state instanceof Error ? reject(state) : resolve(state)));
        });
      /** Gives the oldest question its answer, once it has been asked (the signature check comes first). */
      const answer = async (enabled: boolean | Error) => {
        for (let turn = 0; waiting.length === 0; turn += 1) {
          if (turn > 1_000) throw new Error('nothing was asked');
          await new Promise((resolve) => setImmediate(resolve));
        }
        waiting.shift()?.(enabled instanceof Error ? enabled : { id: 'u', enabled, is_admin: false });
        // Whatever that answer sets off has run by the time the next request comes.
        await new Promise((resolve) => setImmediate(resolve));
      };
      return { ask, answer, waiting };
    }
    const settles = async (promise: Promise<unknown>) => {
      let settled = false;
      void promise.then(
        () => (settled = true),
        () => (settled = true),
      );
      for (let turn = 0; turn < 50; turn += 1) await new Promise((resolve) => setImmediate(resolve));
      return settled;
    };
    /**
     * A verifier whose first request for a token has been answered (enabled) at `start`, with
     * the clock stopped there; `at(ms)` moves it to `start + ms`.
     */
    async function answeredOnce() {
      const access = pendingAnswers();
      const { verifier, sign, calls } = await fixture(access.ask);
      const token = await sign(60);
      const start = Date.now();
      jest.useFakeTimers({ now: start, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
      const first = verifier.verify(token);
      await access.answer(true);
      expect(await codeOf(first)).toBe('ok');
      const at = (ms: number) => jest.setSystemTime(start + ms);
      return { access, calls, at, verify: () => verifier.verify(token) };
    }

    it('is asked for again after half a second while the answer in hand serves, and replaced when the new one comes', async () => {
      const { access, calls, at, verify } = await answeredOnce();
      at(400);
      expect(await codeOf(verify())).toBe('ok');
      expect(calls.state).toBe(1);
      // Past half a second: asked again, and the request does not wait for that answer.
      at(600);
      expect(await codeOf(verify())).toBe('ok');
      expect(await codeOf(verify())).toBe('ok');
      expect(calls.state).toBe(2);
      // The user was disabled meanwhile: from that answer on, the token is refused.
      await access.answer(false);
      expect(await codeOf(verify())).toBe('UNAUTHENTICATED: the user is disabled or no longer exists');
    });

    it('is never used more than a second after it was asked for, even when the next answer is late', async () => {
      const { access, at, verify } = await answeredOnce();
      at(600);
      expect(await codeOf(verify())).toBe('ok');
      expect(access.waiting).toHaveLength(1);
      // A second after the first answer was asked for, a request waits for the next one.
      at(1000);
      const late = verify();
      expect(await settles(late)).toBe(false);
      await access.answer(false);
      expect(await codeOf(late)).toBe('UNAUTHENTICATED: the user is disabled or no longer exists');
    });

    it('serves the answer in hand when asking ahead fails, then asks again once it is too old', async () => {
      const { access, calls, at, verify } = await answeredOnce();
      at(600);
      expect(await codeOf(verify())).toBe('ok');
      await access.answer(new Error('access is away'));
      at(900);
      expect(await codeOf(verify())).toBe('ok');
      expect(calls.state).toBe(3);
      at(1100);
      const again = verify();
      expect(await settles(again)).toBe(false);
      // Only the answer asked for at 900 ms, still on its way, is young enough now.
      expect(calls.state).toBe(3);
      await access.answer(true);
      expect(await codeOf(again)).toBe('ok');
    });
  });
});

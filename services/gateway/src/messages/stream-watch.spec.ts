import { ParleyError } from '@parley/contracts';
import { createLogger } from '@parley/kit';
import type { KeyVerifier } from '../auth/key-verifier';
import type { TokenVerifier } from '../auth/token-verifier';
import { loadConfig } from '../config';
import { StreamWatch } from './stream-watch';

const USER = '01900000-0000-7000-8000-000000000001';
const BOT = '01900000-0000-7000-8000-000000000002';
const SESSION = '01900000-0000-7000-8000-000000000003';

/** The verifiers and the session service, answering what each test says. */
function setup(recheckSeconds = 30) {
  const state = { user: 'ok' as 'ok' | 'disabled', key: 'ok' as 'ok' | 'revoked', session: 'ok' as string };
  const checks: string[] = [];
  const tokens = {
    check: async () => {
      checks.push('token');
      if (state.user === 'disabled') throw new ParleyError('UNAUTHENTICATED', 'the user is disabled');
      return { principal: { type: 'user', id: USER, is_admin: false } };
    },
  } as unknown as TokenVerifier;
  const keys = {
    verify: async () => {
      checks.push('key');
      if (state.key === 'revoked') throw new ParleyError('UNAUTHENTICATED', 'the API key is not valid');
      return { bot_id: BOT, name: 'b', key_id: 'k' };
    },
  } as unknown as KeyVerifier;
  const rpc = {
    call: async () => {
      checks.push('session');
      if (state.session === 'gone') throw new ParleyError('NOT_FOUND', 'no such session');
      if (state.session === 'away') throw new ParleyError('UPSTREAM_UNAVAILABLE', 'no service answers');
      return { id: SESSION };
    },
  };
  const config = loadConfig({ STREAM_RECHECK_SECONDS: String(recheckSeconds) });
  const watch = new StreamWatch(tokens, keys, rpc as never, config, createLogger('test', 'silent'));
  const ended: string[] = [];
  return { state, checks, watch, ended, end: (why: ParleyError) => ended.push(why.code) };
}

describe(StreamWatch.name, () => {
  beforeEach(() => jest.useFakeTimers({ now: Date.parse('2026-11-24T10:00:00Z') }));
  afterEach(() => jest.useRealTimers());

  it('checks again every STREAM_RECHECK_SECONDS and ends the stream once the user is disabled', async () => {
    const t = setup(30);
    t.watch.watch({ kind: 'token', token: 't' }, SESSION, t.end);
    await jest.advanceTimersByTimeAsync(29_999);
    expect(t.checks).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(t.checks).toEqual(['token', 'session']);
    t.state.user = 'disabled';
    await jest.advanceTimersByTimeAsync(30_000);
    expect(t.ended).toEqual(['UNAUTHENTICATED']);
    await jest.advanceTimersByTimeAsync(120_000);
    expect(t.checks).toEqual(['token', 'session', 'token']);
  });

  it('ends the stream when the read right on the session goes, and not while a check cannot be made', async () => {
    const t = setup(1);
    t.watch.watch({ kind: 'token', token: 't' }, SESSION, t.end);
    t.state.session = 'away';
    await jest.advanceTimersByTimeAsync(3000);
    expect(t.ended).toEqual([]);
    t.state.session = 'gone';
    await jest.advanceTimersByTimeAsync(1000);
    expect(t.ended).toEqual(['NOT_FOUND']);
  });

  it('ends the stream at the moment its access token expires', async () => {
    const t = setup(30);
    t.watch.watch({ kind: 'token', token: 't', expiresAt: Date.now() + 10_000 }, SESSION, t.end);
    await jest.advanceTimersByTimeAsync(9_999);
    expect(t.ended).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(t.ended).toEqual(['UNAUTHENTICATED']);
    expect(t.checks).toEqual([]);
  });

  it("checks a bot's key again and ends its stream once the key is revoked", async () => {
    const t = setup(1);
    t.watch.watch({ kind: 'key', key: 'pk_x' }, SESSION, t.end);
    await jest.advanceTimersByTimeAsync(1000);
    expect(t.checks).toEqual(['key', 'session']);
    t.state.key = 'revoked';
    await jest.advanceTimersByTimeAsync(1000);
    expect(t.ended).toEqual(['UNAUTHENTICATED']);
  });

  it('stops checking once the stream has closed for another reason', async () => {
    const t = setup(1);
    const stop = t.watch.watch({ kind: 'token', token: 't', expiresAt: Date.now() + 5000 }, SESSION, t.end);
    await jest.advanceTimersByTimeAsync(1000);
    stop();
    t.state.user = 'disabled';
    await jest.advanceTimersByTimeAsync(10_000);
    expect(t.ended).toEqual([]);
    expect(t.checks).toEqual(['token', 'session']);
  });
});

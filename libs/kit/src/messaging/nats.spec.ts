import type { NatsConnection } from '@nats-io/transport-node';
import { ParleyError } from '@parley/contracts';
import { Nats } from './nats';

/** A connection that is open and knows its server (what `Nats.connected` reads of it). */
const open = () => ({ isClosed: () => false, info: { max_payload: 1024 } }) as unknown as NatsConnection;
const make = () =>
  new (Nats as unknown as new (nc: NatsConnection, prefix: string, inbox: string) => Nats)(open(), '', '_INBOX');

const outcome = (work: Promise<unknown>) =>
  work.then(
    (value) => ({ value }),
    (error: unknown) =>
      error instanceof ParleyError ? { code: error.code, retryable: error.retryable } : { error: String(error) },
  );

describe('Nats.whileConnected', () => {
  it('runs the call while connected and settles as the call does', async () => {
    const nats = make();
    expect(await outcome(nats.whileConnected(async () => 42))).toEqual({ value: 42 });
    expect(await outcome(nats.whileConnected(() => Promise.reject(new Error('no'))))).toEqual({ error: 'Error: no' });
    const throwing = () => {
      throw new Error('sync');
    };
    expect(await outcome(nats.whileConnected(throwing))).toEqual({ error: 'Error: sync' });
  });

  it('rejects a call in flight when the connection drops, 503 retryable, without waiting for it', async () => {
    const nats = make();
    let called = false;
    // A call nats.js would keep buffered until its own timeout.
    const hanging = nats.whileConnected(() => {
      called = true;
      return new Promise<never>(() => undefined);
    });
    expect(called).toBe(true);
    nats.observe('disconnect');
    expect(await outcome(hanging)).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
  });

  it('refuses calls at once while disconnected, without making them, and runs them again once reconnected', async () => {
    const nats = make();
    nats.observe('disconnect');
    expect(nats.connected).toBe(false);
    let made = 0;
    const call = async () => {
      made += 1;
      return 'answer';
    };
    expect(await outcome(nats.whileConnected(call))).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    nats.observe('reconnecting');
    expect(await outcome(nats.whileConnected(call))).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
    expect(made).toBe(0);
    nats.observe('reconnect');
    expect(nats.connected).toBe(true);
    expect(await outcome(nats.whileConnected(call))).toEqual({ value: 'answer' });
    expect(made).toBe(1);
  });

  it('answers a call by the drop when its own answer comes after it', async () => {
    const nats = make();
    expect(await outcome(nats.whileConnected(async () => 'done'))).toEqual({ value: 'done' });
    let settle: (value: string) => void = () => undefined;
    const pending = nats.whileConnected(() => new Promise<string>((r) => (settle = r)));
    nats.observe('disconnect');
    settle('too late');
    expect(await outcome(pending)).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true });
  });
});

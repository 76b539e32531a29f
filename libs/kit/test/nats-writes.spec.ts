import { Socket } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { NATS_URL, runId } from '../../../test/support/stack';

/**
 * The project's patch of nats.js writes what a process publishes once the event loop has run
 * every callback it was ready to (see patches/), so that what several sockets' input caused
 * reaches the server in one write. This holds the patch to that, against the real server.
 */
describe('publishing from several callbacks of one event-loop turn', () => {
  const subject = `${runId('nw')}.probe`;
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connect({ servers: NATS_URL, name: 'kit-writes-test' });
  });

  afterAll(async () => {
    jest.restoreAllMocks();
    await nc.close();
  });

  const framesWith = (calls: unknown[][], text: string) =>
    calls
      .map(([chunk]) => (typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('latin1')))
      .filter((frame) => frame.includes(text));

  it('goes out in one write, and each message arrives', async () => {
    const sub = nc.subscribe(subject, { max: 20 });
    await nc.flush();
    const received = (async () => {
      const bodies: string[] = [];
      for await (const msg of sub) bodies.push(msg.string());
      return bodies;
    })();
    const write = jest.spyOn(Socket.prototype, 'write');
    // Twenty immediates run in one check phase, each its own callback, as twenty sockets' reads
    // do in one poll phase. (Not timers: each takes the loop's clock when it is set, so twenty
    // set across a millisecond's edge fall due in two turns.)
    await new Promise<void>((done) => {
      let left = 20;
      for (let i = 0; i < 20; i += 1) {
        setImmediate(() => {
          nc.publish(subject, `m${i}`);
          if ((left -= 1) === 0) done();
        });
      }
    });
    await nc.flush();
    const frames = framesWith(write.mock.calls, subject);
    write.mockRestore();
    expect(frames).toHaveLength(1);
    expect(frames[0].match(/\bPUB /g)).toHaveLength(20);
    expect(await received).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  it('goes out when the connection is closed right after, without a flush', async () => {
    const sub = nc.subscribe(`${subject}.closing`, { max: 2 });
    await nc.flush();
    const publisher = await connect({ servers: NATS_URL, name: 'kit-writes-closing' });
    publisher.publish(`${subject}.closing`, 'same turn');
    await publisher.close();
    const other = await connect({ servers: NATS_URL, name: 'kit-writes-closing' });
    other.publish(`${subject}.closing`, 'after a promise');
    await Promise.resolve();
    await other.close();
    // A message lost on close never comes: give up waiting after a generous while.
    const bodies: string[] = [];
    const gaveUp = setTimeout(() => sub.unsubscribe(), 10_000);
    for await (const msg of sub) bodies.push(msg.string());
    clearTimeout(gaveUp);
    expect(bodies).toEqual(['same turn', 'after a promise']);
  });

  it('still goes out at once when one callback publishes alone', async () => {
    const sub = nc.subscribe(`${subject}.alone`, { max: 1 });
    await nc.flush();
    nc.publish(`${subject}.alone`, 'one');
    // A write left waiting for a later one would never arrive: the test would time out.
    const bodies: string[] = [];
    for await (const msg of sub) bodies.push(msg.string());
    expect(bodies).toEqual(['one']);
  });
});

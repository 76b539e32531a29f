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
    // Twenty timers due at once run in one timers phase, each its own callback, as twenty
    // sockets' reads do in one poll phase.
    await new Promise<void>((done) => {
      let left = 20;
      for (let i = 0; i < 20; i += 1) {
        setTimeout(() => {
          nc.publish(subject, `m${i}`);
          if ((left -= 1) === 0) done();
        }, 0);
      }
    });
    await nc.flush();
    const frames = framesWith(write.mock.calls, subject);
    write.mockRestore();
    expect(frames).toHaveLength(1);
    expect(frames[0].match(/\bPUB /g)).toHaveLength(20);
    expect(await received).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
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

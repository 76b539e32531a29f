import Fastify from 'fastify';
import { loadConfig } from '../config';
import { clientAddress, trustProxyEntryProblem } from './client-address';

/** A bare Fastify with the gateway's TRUST_PROXY, answering the client address it sees. */
async function serverTrusting(trustProxy: string | undefined) {
  const config = loadConfig(trustProxy === undefined ? {} : { TRUST_PROXY: trustProxy });
  const app = Fastify({ trustProxy: config.TRUST_PROXY.length ? config.TRUST_PROXY : false });
  app.get('/', (request) => ({ client: clientAddress(request) }));
  await app.ready();
  const ask = async (remoteAddress: string, forwardedFor?: string) => {
    const res = await app.inject({
      method: 'GET',
      url: '/',
      remoteAddress,
      headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
    });
    return (res.json() as { client: string }).client;
  };
  return { app, ask };
}

describe('TRUST_PROXY', () => {
  it('takes addresses and CIDRs, IPv4 and IPv6, comma-separated', () => {
    expect(loadConfig({}).TRUST_PROXY).toEqual([]);
    expect(loadConfig({ TRUST_PROXY: '' }).TRUST_PROXY).toEqual([]);
    expect(loadConfig({ TRUST_PROXY: ' 10.0.0.0/8, 192.0.2.1 ,fd00::/8,::1,loopback' }).TRUST_PROXY).toEqual([
      '10.0.0.0/8',
      '192.0.2.1',
      'fd00::/8',
      '::1',
      'loopback',
    ]);
  });

  it('refuses what is not an address or a CIDR, naming the entry', () => {
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/8,proxy.example' })).toThrow(/TRUST_PROXY.*proxy\.example/);
    expect(() => loadConfig({ TRUST_PROXY: '10.0.0.0/33' })).toThrow(/prefix length must be 1 to 32/);
    expect(trustProxyEntryProblem('fd00::/129')).toMatch(/1 to 128/);
    expect(trustProxyEntryProblem('10.0.0.0/0')).toMatch(/1 to 32/);
    expect(trustProxyEntryProblem('10.0.0.0/8/8')).toBeDefined();
    expect(trustProxyEntryProblem('*')).toBeDefined();
    expect(trustProxyEntryProblem('fe80::/10')).toBeUndefined();
  });
});

describe(clientAddress.name, () => {
  it('is the socket peer when TRUST_PROXY is unset, whatever X-Forwarded-For says', async () => {
    const { app, ask } = await serverTrusting(undefined);
    try {
      expect(await ask('203.0.113.7')).toBe('203.0.113.7');
      expect(await ask('203.0.113.7', '198.51.100.1')).toBe('203.0.113.7');
      expect(await ask('127.0.0.1', '198.51.100.1')).toBe('127.0.0.1');
    } finally {
      await app.close();
    }
  });

  it('believes X-Forwarded-For only from a trusted proxy, taking the right-most untrusted entry', async () => {
    const { app, ask } = await serverTrusting('10.0.0.0/8,2001:db8:ffff::/48');
    try {
      // From a proxy: the address it appended, not what the client wrote on the left.
      expect(await ask('10.1.2.3', '198.51.100.1')).toBe('198.51.100.1');
      expect(await ask('10.1.2.3', '1.1.1.1, 198.51.100.1')).toBe('198.51.100.1');
      // Two trusted proxies in a row are skipped.
      expect(await ask('10.1.2.3', '1.1.1.1, 198.51.100.1, 10.9.9.9')).toBe('198.51.100.1');
      expect(await ask('2001:db8:ffff:1::1', '2001:db8:1:2::3')).toBe('2001:db8:1:2::3');
      // An IPv4 proxy reaching a dual-stack socket shows as an IPv4-mapped address: still trusted.
      expect(await ask('::ffff:10.1.2.3', '198.51.100.1')).toBe('198.51.100.1');
      // Not from a proxy: the header is the client's own words.
      expect(await ask('203.0.113.7', '198.51.100.1')).toBe('203.0.113.7');
      expect(await ask('10.1.2.3')).toBe('10.1.2.3');
    } finally {
      await app.close();
    }
  });

  it('falls back to the socket peer when a trusted proxy forwards something that is not an address', async () => {
    const { app, ask } = await serverTrusting('10.0.0.0/8');
    try {
      expect(await ask('10.1.2.3', 'not-an-address')).toBe('10.1.2.3');
    } finally {
      await app.close();
    }
  });
});

import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';

/** Names Fastify's `trustProxy` list accepts for well-known ranges. */
const NAMED_RANGES: Record<string, string> = {
  loopback: '127.0.0.0/8 and ::1',
  linklocal: '169.254.0.0/16 and fe80::/10',
  uniquelocal: '10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and fc00::/7',
};

/**
 * Why one `TRUST_PROXY` entry is not an address (IPv4 or IPv6), a CIDR (`10.0.0.0/8`,
 * `fd00::/8`) or a named range (`loopback`, `linklocal`, `uniquelocal`); undefined when it is.
 */
export function trustProxyEntryProblem(entry: string): string | undefined {
  if (Object.hasOwn(NAMED_RANGES, entry)) return undefined;
  const [address, bits, ...rest] = entry.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || address?.includes('%') || rest.length > 0) {
    return `"${entry}" is not an IP address, a CIDR or one of ${Object.keys(NAMED_RANGES).join(', ')}`;
  }
  if (bits === undefined) return undefined;
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) < 1 || Number(bits) > max) {
    return `"${entry}": the prefix length must be 1 to ${max}`;
  }
  return undefined;
}

/**
 * The address of the client that sent a request. Fastify's `request.ip` is the socket's peer,
 * unless that peer is a trusted proxy (`TRUST_PROXY`): then it walks `X-Forwarded-For` from the
 * right and stops at the first address that is not a trusted proxy, so entries a client wrote
 * itself (on the left) are never taken. Anything unreadable falls back to the socket's address.
 */
export function clientAddress(request: FastifyRequest): string {
  const ip = request.ip;
  if (typeof ip === 'string' && isIP(ip) !== 0) return ip;
  return request.raw.socket?.remoteAddress ?? '';
}

import { isIP } from 'node:net';

/** The bucket for a login that names no readable client address. */
export const UNKNOWN_ADDRESS = 'unknown';

/** An IPv6 address's eight 16-bit groups (`isIP` has already said it is one). */
function ipv6Groups(text: string): number[] {
  let address = text;
  const lastColon = address.lastIndexOf(':');
  const tail = address.slice(lastColon + 1);
  if (tail.includes('.')) {
    // A dotted IPv4 tail (`::ffff:1.2.3.4`) is the last two groups.
    const [a, b, c, d] = tail.split('.').map(Number);
    address = `${address.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = address.split('::');
  const before = head ? head.split(':') : [];
  const after = rest ? rest.split(':') : [];
  const groups =
    rest === undefined ? before : [...before, ...Array<string>(8 - before.length - after.length).fill('0'), ...after];
  return groups.map((g) => parseInt(g, 16));
}

/**
 * The address login failures are counted under: an IPv4 address as itself, an IPv4-mapped IPv6
 * address (`::ffff:1.2.3.4`) as the IPv4 address, any other IPv6 address as its /64 (one
 * subscriber usually holds a whole /64, so counting single IPv6 addresses would count nothing).
 * Anything else, or nothing, is one shared bucket.
 */
export function addressKey(raw: string | undefined): string {
  let text = (raw ?? '').trim();
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  const family = isIP(text);
  if (family === 4) return text;
  if (family !== 6) return UNKNOWN_ADDRESS;
  const groups = ipv6Groups(text.toLowerCase());
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return UNKNOWN_ADDRESS;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [high, low] = [groups[6], groups[7]];
    return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

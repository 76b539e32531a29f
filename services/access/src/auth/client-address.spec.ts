import { UNKNOWN_ADDRESS, addressKey } from './client-address';

describe(addressKey.name, () => {
  it('keeps an IPv4 address as it is', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey(' 198.51.100.1 ')).toBe('198.51.100.1');
  });

  it('counts an IPv4-mapped IPv6 address as the IPv4 address', () => {
    expect(addressKey('::ffff:1.2.3.4')).toBe('1.2.3.4');
    expect(addressKey('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('0:0:0:0:0:ffff:0102:0304')).toBe('1.2.3.4');
    expect(addressKey('::ffff:c000:0280')).toBe('192.0.2.128');
  });

  it('counts an IPv6 address as its /64, however it is written', () => {
    const key = addressKey('2001:db8:aa:bb::1');
    expect(key).toBe('2001:db8:aa:bb::/64');
    expect(addressKey('2001:0db8:00aa:00bb:ffff:ffff:ffff:ffff')).toBe(key);
    expect(addressKey('2001:DB8:AA:BB:1:2:3:4')).toBe(key);
    expect(addressKey('[2001:db8:aa:bb::9]')).toBe(key);
    expect(addressKey('2001:db8:aa:bb::1%eth0')).toBe(key);
    expect(addressKey('2001:db8:aa:bc::1')).not.toBe(key);
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1:2:3:4')).toBe('fe80:0:0:0::/64');
  });

  it('does not take an IPv6 address that merely ends in a dotted quad for IPv4', () => {
    expect(addressKey('2001:db8:1:2::1.2.3.4')).toBe('2001:db8:1:2::/64');
    expect(addressKey('::1.2.3.4')).toBe('0:0:0:0::/64');
  });

  it('puts what is not an address, or nothing, in one bucket', () => {
    for (const raw of [
      undefined,
      '',
      'unknown',
      'localhost',
      '1.2.3',
      '999.1.1.1',
      '2001:db8::1::2',
      '1.2.3.4, 5.6.7.8',
    ]) {
      expect(addressKey(raw)).toBe(UNKNOWN_ADDRESS);
    }
  });
});

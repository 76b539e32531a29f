import { ParleyError } from '@parley/contracts';
import { decodeJson, nestsDeeperThan } from './wire';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('decodeJson', () => {
  it('reads JSON, and an empty payload as {}', () => {
    expect(decodeJson(bytes('{"a":[1,{"b":null}]}'))).toEqual({ a: [1, { b: null }] });
    expect(decodeJson(new Uint8Array())).toEqual({});
  });

  it('refuses what is not UTF-8 JSON with BAD_REQUEST', () => {
    for (const bad of [bytes('{nope'), new Uint8Array([0x7b, 0xff, 0x7d]), bytes('[1,')]) {
      expect(() => decodeJson(bad)).toThrow(ParleyError);
    }
  });

  it('refuses nesting deeper than the wire allows before parsing it', () => {
    const deep = bytes(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    const started = Date.now();
    expect(() => decodeJson(deep)).toThrow(/nests deeper than 64/);
    expect(Date.now() - started).toBeLessThan(200);
    expect(decodeJson(bytes(`${'['.repeat(64)}${']'.repeat(64)}`))).toBeDefined();
  });
});

describe('nestsDeeperThan', () => {
  it('counts brackets outside strings only, escaped quotes included', () => {
    expect(nestsDeeperThan(bytes('{"a":"[[[[\\"[[[["}'), 1)).toBe(false);
    expect(nestsDeeperThan(bytes('{"a":[{"b":[]}]}'), 3)).toBe(true);
    expect(nestsDeeperThan(bytes('{"a":[{"b":[]}]}'), 4)).toBe(false);
  });
});

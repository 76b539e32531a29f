import fc from 'fast-check';
import { ParleyError, type Principal } from '@parley/contracts';
import { CursorCodec, canonicalJson, type CursorKey } from './cursors';
import { Keyset, keysetFilter, keysetSql, type KeysetList } from './keyset';

/** A keyring held in memory: the table behind the real one is tested against PostgreSQL. */
class Ring {
  keys: CursorKey[] = [{ id: 'k1', secret: Buffer.alloc(32, 1), retiredAt: null }];
  now = Date.now();
  signing() {
    return this.keys.find((k) => k.retiredAt === null) as CursorKey;
  }
  verifying(id: string) {
    return this.keys.find(
      (k) => k.id === id && (k.retiredAt === null || this.now - k.retiredAt.getTime() < 86_400_000),
    );
  }
  rotate(id: string) {
    for (const k of this.keys) k.retiredAt ??= new Date(this.now);
    this.keys.push({ id, secret: Buffer.alloc(32, this.keys.length + 1), retiredAt: null });
  }
}

const SESSIONS: KeysetList = {
  name: 'sessions',
  keys: [
    { column: 'last_activity_at', property: 'lastActivityAt', type: 'timestamp', order: 'desc' },
    { column: 'id', type: 'uuid', order: 'desc' },
  ],
};
const alice: Principal = { type: 'user', id: '0190a000-0000-7000-8000-000000000001', is_admin: false };
const bob: Principal = { type: 'user', id: '0190a000-0000-7000-8000-000000000002', is_admin: false };
const position = ['2026-11-30T10:00:00.000Z', '0190a000-0000-7000-8000-0000000000aa'];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof ParleyError ? `${err.code} ${err.errors?.[0]?.field}` : 'other';
  }
}

describe('list cursors', () => {
  const ring = new Ring();
  const keyset = new Keyset(new CursorCodec(ring));
  const bind = { actor: alice, filters: { status: 'active' } };
  const cursor = keyset.cursorAt(SESSIONS, bind, position);

  it('open to the position they were sealed at, for the same list, filters and caller', () => {
    expect(keyset.after(SESSIONS, cursor, bind)).toEqual(position);
    expect(keyset.after(SESSIONS, cursor, { actor: alice, filters: { status: 'active', q: undefined } })).toEqual(
      position,
    );
  });

  it('are refused as INVALID_CURSOR for another caller, filter, order or list', () => {
    expect(codeOf(() => keyset.after(SESSIONS, cursor, { actor: bob, filters: { status: 'active' } }))).toBe(
      'INVALID_CURSOR cursor',
    );
    expect(codeOf(() => keyset.after(SESSIONS, cursor, { actor: alice, filters: { status: 'archived' } }))).toBe(
      'INVALID_CURSOR cursor',
    );
    expect(codeOf(() => keyset.after(SESSIONS, cursor, { actor: alice, filters: {} }))).toBe('INVALID_CURSOR cursor');
    expect(codeOf(() => keyset.after({ ...SESSIONS, name: 'bots' }, cursor, bind))).toBe('INVALID_CURSOR cursor');
  });

  it('refuse every edit, and never answer anything but INVALID_CURSOR', () => {
    fc.assert(
      fc.property(fc.nat(cursor.length - 1), fc.integer({ min: 0, max: 0xffff }), (at, code) => {
        const edited = cursor.slice(0, at) + String.fromCharCode(code) + cursor.slice(at + 1);
        fc.pre(edited !== cursor);
        expect(codeOf(() => keyset.after(SESSIONS, edited, bind))).toBe('INVALID_CURSOR cursor');
      }),
      { seed: 1130, numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 600 }), (junk) => {
        expect(codeOf(() => keyset.after(SESSIONS, junk, bind))).toBe('INVALID_CURSOR cursor');
      }),
      { seed: 1130, numRuns: 300 },
    );
    // Every position, every base64url character: spare bits of the last one included.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.';
    for (let at = 0; at < cursor.length; at++) {
      for (const c of alphabet) {
        if (c === cursor[at]) continue;
        const edited = cursor.slice(0, at) + c + cursor.slice(at + 1);
        expect(codeOf(() => keyset.after(SESSIONS, edited, bind))).toBe('INVALID_CURSOR cursor');
      }
    }
    // The classic attack: an unsigned cursor with values of the wrong type.
    expect(codeOf(() => keyset.after(SESSIONS, 'WyJ4Il0', bind))).toBe('INVALID_CURSOR cursor');
  });

  it('refuse a signed cursor whose values do not fit the keys', () => {
    const wrong = keyset.cursorAt(SESSIONS, bind, ['yesterday', 'not-a-uuid']);
    expect(codeOf(() => keyset.after(SESSIONS, wrong, bind))).toBe('INVALID_CURSOR cursor');
    const short = keyset.cursorAt(SESSIONS, bind, ['2026-11-30T10:00:00.000Z']);
    expect(codeOf(() => keyset.after(SESSIONS, short, bind))).toBe('INVALID_CURSOR cursor');
  });

  it('keep working for 24 h after the key is rotated, not after', () => {
    const local = new Ring();
    const ks = new Keyset(new CursorCodec(local));
    const old = ks.cursorAt(SESSIONS, bind, position);
    local.rotate('k2');
    expect(ks.cursorAt(SESSIONS, bind, position).startsWith('k2.')).toBe(true);
    local.now += 23 * 3_600_000;
    expect(ks.after(SESSIONS, old, bind)).toEqual(position);
    local.now += 2 * 3_600_000;
    expect(codeOf(() => ks.after(SESSIONS, old, bind))).toBe('INVALID_CURSOR cursor');
  });
});

describe('keyset pages', () => {
  const keyset = new Keyset(new CursorCodec(new Ring()));
  const rows = Array.from({ length: 7 }, (_, i) => ({ n: i, text: 'x'.repeat(i === 2 ? 500 : 10) }));
  const INTS: KeysetList = { name: 'ints', keys: [{ column: 'n', type: 'int', order: 'asc' }] };
  const read = (cursor: string | undefined, limit: number, budget?: number) =>
    keyset.page(
      INTS,
      { limit, cursor },
      { actor: alice },
      async ({ after, take }) => rows.filter((r) => after === undefined || r.n > Number(after[0])).slice(0, take),
      { view: (r) => r, key: (r) => [r.n], budget },
    );

  it('walk the whole list once, cut by limit and by bytes, and end with a null cursor', async () => {
    const seen: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await read(cursor, 3, 300);
      expect(page.items.length).toBeGreaterThan(0);
      seen.push(...page.items.map((r) => r.n));
      cursor = page.next_cursor ?? undefined;
      pages++;
    } while (cursor);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(pages).toBeGreaterThan(3);
  });
});

describe('keyset conditions', () => {
  const after = ['2026-11-30T10:00:00.000Z', '0190a000-0000-7000-8000-0000000000aa'];

  it('use a row comparison when every key runs one way', () => {
    const { sql, params } = keysetSql(SESSIONS, after);
    expect(sql).toBe('(last_activity_at, id) < (?, ?)');
    expect(params).toEqual([new Date(after[0] as string), after[1]]);
    expect(keysetFilter(SESSIONS, after)).toEqual({
      $or: [
        { lastActivityAt: { $lt: new Date(after[0] as string) } },
        { lastActivityAt: new Date(after[0] as string), id: { $lt: after[1] } },
      ],
    });
  });

  it('expand mixed directions', () => {
    const prices: KeysetList = {
      name: 'prices',
      keys: [
        { column: 'provider', type: 'text', order: 'asc' },
        { column: 'effective_from', type: 'timestamp', order: 'desc' },
      ],
    };
    const { sql, params } = keysetSql(prices, ['openai', '2026-01-01T00:00:00.000Z']);
    expect(sql).toBe('((provider > ?) or (provider = ? and effective_from < ?))');
    expect(params).toEqual(['openai', 'openai', new Date('2026-01-01T00:00:00.000Z')]);
  });
});

describe(canonicalJson.name, () => {
  it('does not depend on key order or undefined fields', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 1, x: 2 }], c: undefined } })).toBe(
      canonicalJson({ a: { d: [1, { x: 2, y: 1 }] }, b: 1 }),
    );
  });
});

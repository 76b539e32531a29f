import { createHash, createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { defineEntity, p, type MikroORM } from '@mikro-orm/postgresql';
import { Migration } from '@mikro-orm/migrations';
import { ParleyError, type Principal } from '@parley/contracts';
import type { Logger } from '../observability/logger';

/** How long a key keeps verifying cursors after the next one took over. */
export const CURSOR_KEY_GRACE_MS = 24 * 60 * 60 * 1000;
/** How often an instance re-reads the key table, so a rotation reaches every instance. */
const REFRESH_MS = 60_000;
const MAC_BYTES = 16;

export interface CursorKey {
  id: string;
  secret: Buffer;
  /** When the next key took over; null for the key that signs. */
  retiredAt: Date | null;
}

export function invalidCursor(
  message = 'not a cursor this list issued for this caller and these filters',
): ParleyError {
  return new ParleyError('INVALID_CURSOR', `cursor: ${message}`, { errors: [{ field: 'cursor', message }] });
}

/** Object keys sorted at every depth and undefined dropped: equal bindings give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}

/** Who a cursor belongs to: part of every binding. */
export function callerOf(actor: Principal | undefined): string {
  return actor ? `${actor.type}:${actor.id}` : 'service';
}

const keyIdOf = (secret: Buffer) => createHash('sha256').update(secret).digest('base64url').slice(0, 8);

/**
 * The keys that sign and verify list cursors. They live in the service's own schema
 * (`cursor_keys`), so every instance of a service signs alike and a cursor outlives a
 * restart. With `CURSOR_SECRET` set, the signing key is derived from it; a new secret
 * retires the previous key, which keeps verifying for 24 h. Without it, a random key is
 * made once by whichever instance starts first.
 */
export class CursorKeyring {
  private keys: CursorKey[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly orm: MikroORM,
    private readonly secret: string | undefined,
    private readonly logger?: Logger,
  ) {}

  /** Makes sure the signing key exists (rotating to `CURSOR_SECRET`'s if it changed) and reads the keys. */
  async start(): Promise<void> {
    await this.settle();
    await this.refresh();
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.logger?.warn({ err }, 'cursor keys could not be re-read'));
    }, REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Retires the signing key and makes a new random one (operators: after a suspected leak). */
  async rotate(): Promise<void> {
    await this.orm.em.fork().transactional(async (em) => {
      await em.execute(`select pg_advisory_xact_lock(hashtext('parley:cursor-keys'))`);
      await em.execute(`update cursor_keys set retired_at = now() where retired_at is null`);
      const secret = randomBytes(32);
      await em.execute(`insert into cursor_keys (id, secret) values (?, ?)`, [
        keyIdOf(secret),
        secret.toString('base64'),
      ]);
    });
    await this.refresh();
  }

  signing(): CursorKey {
    const key = this.keys.find((k) => k.retiredAt === null);
    if (!key) throw new ParleyError('UPSTREAM_UNAVAILABLE', 'cursor keys are not loaded yet', { retryable: true });
    return key;
  }

  /** A key that may verify a cursor now: the signing one, or one retired less than 24 h ago. */
  verifying(id: string, now = Date.now()): CursorKey | undefined {
    return this.keys.find(
      (k) => k.id === id && (k.retiredAt === null || now - k.retiredAt.getTime() < CURSOR_KEY_GRACE_MS),
    );
  }

  private async settle(): Promise<void> {
    const wanted = this.secret ? createHmac('sha256', this.secret).update('parley cursor key').digest() : undefined;
    await this.orm.em.fork().transactional(async (em) => {
      await em.execute(`select pg_advisory_xact_lock(hashtext('parley:cursor-keys'))`);
      const current = await em.execute<{ id: string }[]>(`select id from cursor_keys where retired_at is null`);
      if (wanted) {
        const id = keyIdOf(wanted);
        if (current.length === 1 && current[0]?.id === id) return;
        await em.execute(`update cursor_keys set retired_at = now() where retired_at is null`);
        // The same secret set again after another one: it signs again.
        await em.execute(
          `insert into cursor_keys (id, secret) values (?, ?) on conflict (id) do update set retired_at = null`,
          [id, wanted.toString('base64')],
        );
        this.logger?.info({ key: id }, 'cursor signing key taken from CURSOR_SECRET');
        return;
      }
      if (current.length > 0) return;
      const secret = randomBytes(32);
      await em.execute(`insert into cursor_keys (id, secret) values (?, ?)`, [
        keyIdOf(secret),
        secret.toString('base64'),
      ]);
    });
  }

  private async refresh(): Promise<void> {
    const rows = await this.orm.em.fork().execute<{ id: string; secret: string; retired_at: Date | string | null }[]>(
      `select id, secret, retired_at from cursor_keys
         where retired_at is null or retired_at > now() - make_interval(secs => ?)`,
      [CURSOR_KEY_GRACE_MS / 1000],
    );
    this.keys = rows.map((r) => ({
      id: r.id,
      secret: Buffer.from(r.secret, 'base64'),
      retiredAt: r.retired_at === null ? null : new Date(r.retired_at),
    }));
  }
}

/**
 * A key as a KeyObject, made once per secret: an HMAC from a raw Buffer imports the key
 * again every time (about 8 µs against 1.6 µs, most of a cursor's cost).
 */
const hmacKeys = new WeakMap<Buffer, KeyObject>();
function hmacKeyOf(secret: Buffer): KeyObject {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = createSecretKey(secret);
    hmacKeys.set(secret, key);
  }
  return key;
}

/**
 * Seals a list position into an opaque cursor: `<key id>.<values>.<mac>`, the MAC covering
 * the values and what the cursor is bound to (the list, its filters, its order, the caller),
 * so an edited cursor, or one used on another list, filter or caller, is refused.
 */
export class CursorCodec {
  constructor(private readonly keyring: Pick<CursorKeyring, 'signing' | 'verifying'>) {}

  seal(binding: unknown, values: readonly unknown[]): string {
    const key = this.keyring.signing();
    const body = Buffer.from(JSON.stringify(values)).toString('base64url');
    return `${key.id}.${body}.${this.mac(key.secret, key.id, body, binding).toString('base64url')}`;
  }

  /** The values a cursor carries, once its MAC holds for this binding; otherwise 400 INVALID_CURSOR. */
  open(binding: unknown, cursor: string): unknown[] {
    const parts = cursor.split('.');
    if (parts.length !== 3) throw invalidCursor();
    const [id, body, mac] = parts as [string, string, string];
    const key = this.keyring.verifying(id);
    if (!key) throw invalidCursor('not a cursor this list issued, or one older than its signing key');
    // Compared as text: base64url decoding ignores a last character's spare bits.
    const given = Buffer.from(mac);
    const expected = Buffer.from(this.mac(key.secret, id, body, binding).toString('base64url'));
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalidCursor();
    let values: unknown;
    try {
      values = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    } catch {
      throw invalidCursor();
    }
    if (!Array.isArray(values)) throw invalidCursor();
    return values;
  }

  private mac(secret: Buffer, id: string, body: string, binding: unknown): Buffer {
    return createHmac('sha256', hmacKeyOf(secret))
      .update(`${id}.${body}.${canonicalJson(binding)}`)
      .digest()
      .subarray(0, MAC_BYTES);
  }
}

/**
 * The key table as an entity, listed with every service's entities so that MikroORM's schema
 * diff (`migration:create`) knows it; the keyring itself reads and writes it in SQL.
 */
export const CursorKeyEntry = defineEntity({
  name: 'CursorKeyEntry',
  tableName: 'cursor_keys',
  properties: {
    id: p.string().columnType('text').primary(),
    secret: p.string().columnType('text'),
    createdAt: p.datetime().defaultRaw('now()'),
    retiredAt: p.datetime().nullable(),
  },
});

/** The key table, the same in every service's schema: services list this in their migrations. */
export class CursorKeysMigration extends Migration {
  override up(): void {
    this.addSql(
      `create table if not exists "cursor_keys" ("id" text not null, "secret" text not null, "created_at" timestamptz not null default now(), "retired_at" timestamptz null, primary key ("id"));`,
    );
  }

  override down(): void {
    this.addSql(`drop table if exists "cursor_keys";`);
  }
}

// What a backup holds and what a restore does, as plain data: the schemas, the archive's
// table of contents, and where each durable consumer starts again (docs/operations.md,
// decisions/0025). No I/O here; `backup.ts` runs it.
import {
  DOMAIN_STREAM,
  DomainEvents,
  Durables,
  SessionEvents,
  USAGE_ACTIVITY_SUBJECTS,
  USAGE_EVENT_SUBJECTS,
  USAGE_STREAM,
} from '@parley/contracts';

/** The services that own a schema (the gateway has none). */
export const DATABASE_SERVICES = ['access', 'session', 'message', 'usage'] as const;
export type DatabaseService = (typeof DATABASE_SERVICES)[number];

export const isDatabaseService = (name: string): name is DatabaseService =>
  (DATABASE_SERVICES as readonly string[]).includes(name);

/**
 * Every durable consumer whose work lands in a service's schema, and who writes what it reads:
 * another service's outbox, or bots (the USAGE stream).
 */
export interface SchemaConsumer {
  service: DatabaseService;
  stream: string;
  durable: string;
  filterSubject: string;
  producer: DatabaseService | 'bots';
}

export const SCHEMA_CONSUMERS: readonly SchemaConsumer[] = [
  {
    service: 'access',
    stream: DOMAIN_STREAM,
    durable: Durables.accessEpoch,
    filterSubject: DomainEvents.accessChanged.subject,
    producer: 'access',
  },
  {
    service: 'session',
    stream: DOMAIN_STREAM,
    durable: Durables.sessionMessageStats,
    filterSubject: DomainEvents.messageStats.subject,
    producer: 'message',
  },
  {
    service: 'message',
    stream: DOMAIN_STREAM,
    durable: Durables.messageSessionEvents,
    filterSubject: SessionEvents.subject,
    producer: 'session',
  },
  {
    service: 'usage',
    stream: USAGE_STREAM,
    durable: Durables.usageRecords,
    filterSubject: USAGE_EVENT_SUBJECTS,
    producer: 'bots',
  },
  {
    service: 'usage',
    stream: USAGE_STREAM,
    durable: Durables.usageActivity,
    filterSubject: USAGE_ACTIVITY_SUBJECTS,
    producer: 'bots',
  },
];

/**
 * Where a restored service's consumer starts again.
 * - `restore`: its producer is restored with it. Every event of the producer in the stream was
 *   applied in the state the restore brings back, or was written after it and belongs to the
 *   timeline the restore discards (a session deleted after the backup must not delete the
 *   restored session's messages). The consumer starts after the marker this restore publishes;
 *   events the restored outboxes still hold are relayed again.
 * - `last-restore`: its producer is not restored. Its events are still true and newer than the
 *   restored schema: the consumer applies them again, from just after the producer's own last
 *   restore (its marker), or from the stream's first event if it never was. The consumers are
 *   idempotent (versions, event times, keys), so what the restored schema already has changes
 *   nothing.
 * - `first`: bots write what it reads (USAGE); no restore discards any of it. It applies the
 *   whole stream again; a request already recorded counts once.
 */
export type ConsumerStart =
  | { from: 'restore'; producer: DatabaseService }
  | { from: 'last-restore'; producer: DatabaseService }
  | { from: 'first' };

export function consumerStart(consumer: SchemaConsumer, restored: ReadonlySet<DatabaseService>): ConsumerStart {
  if (consumer.producer === 'bots') return { from: 'first' };
  return restored.has(consumer.producer)
    ? { from: 'restore', producer: consumer.producer }
    : { from: 'last-restore', producer: consumer.producer };
}

/** One line of `pg_restore --list`. */
export interface TocEntry {
  line: string;
  /** The object's kind: `TABLE`, `TABLE DATA`, `SCHEMA`, `EXTENSION`, `FK CONSTRAINT`, … */
  desc: string;
  /** Its schema; `-` for objects outside one (schemas, extensions). */
  namespace: string;
  /** Its name (for a comment or ACL, e.g. `SCHEMA access`). */
  tag: string;
}

const ENTRY = /^\d+; \d+ \d+ (.*)$/;

/** Parses `pg_restore --list`: `id; catalog oid DESC namespace tag owner`, where DESC is upper-case words. */
export function parseToc(text: string): TocEntry[] {
  const entries: TocEntry[] = [];
  for (const line of text.split('\n')) {
    const match = ENTRY.exec(line.trim());
    if (!match) continue;
    const words = match[1].split(' ');
    let i = 0;
    while (i < words.length && /^[A-Z]+$/.test(words[i])) i += 1;
    const desc = words.slice(0, i).join(' ');
    const namespace = words[i] ?? '';
    // The owner is the last word when there is one; a tag may hold spaces (`SCHEMA access`).
    const rest = words.slice(i + 1);
    const tag = (rest.length > 1 ? rest.slice(0, -1) : rest).join(' ');
    entries.push({ line: line.trim(), desc, namespace, tag });
  }
  return entries;
}

/** The schemas an archive creates. */
export function archivedSchemas(entries: TocEntry[]): string[] {
  return entries.filter((e) => e.desc === 'SCHEMA' && e.namespace === '-').map((e) => e.tag);
}

/**
 * The entries that restore `schemas`: their objects and data, the schemas themselves (with
 * their grants), and the extensions the archive carries (`create extension if not exists`),
 * without the extensions' comments, which only their owner may set.
 */
export function entriesFor(entries: TocEntry[], schemas: ReadonlySet<string>): TocEntry[] {
  return entries.filter(
    (e) =>
      schemas.has(e.namespace) ||
      (e.namespace === '-' && e.desc === 'SCHEMA' && schemas.has(e.tag)) ||
      (e.namespace === '-' && e.desc === 'EXTENSION') ||
      (e.namespace === '-' &&
        (e.desc === 'ACL' || e.desc === 'COMMENT') &&
        e.tag.startsWith('SCHEMA ') &&
        schemas.has(e.tag.slice('SCHEMA '.length))),
  );
}

/** Double-quotes an SQL identifier. */
export const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Gives every row of a restored outbox a new id, in the same order (rows are relayed by id).
 * The row's id is its event's `Nats-Msg-Id`: a row the backup caught before its relay
 * committed may have been published since, and the stream's duplicate window would drop it
 * again under the same id, while the restored consumers skip its first copy. The new id keeps
 * the old one's first 48 bits (its UUIDv7 time) and then the row's rank, so the order holds.
 */
export function outboxRekeySql(schema: string): string {
  const table = `${ident(schema)}.outbox`;
  return `DO $rekey$ BEGIN
  IF to_regclass('${table.replaceAll("'", "''")}') IS NOT NULL THEN
    IF (SELECT count(*) FROM ${table}) >= 16777216 THEN
      RAISE EXCEPTION 'outbox % holds too many rows to renumber', '${schema.replaceAll("'", "''")}';
    END IF;
    WITH ranked AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM ${table})
    UPDATE ${table} o SET id = (
      substr(replace(o.id::text, '-', ''), 1, 12) || '7' || lpad(to_hex((r.n >> 12) & 4095), 3, '0') ||
      '8' || lpad(to_hex(r.n & 4095), 3, '0') || substr(replace(gen_random_uuid()::text, '-', ''), 21, 12)
    )::uuid
    FROM ranked r WHERE r.id = o.id;
  END IF;
END $rekey$;
`;
}

import { Durables } from '@parley/contracts';
import {
  DATABASE_SERVICES,
  SCHEMA_CONSUMERS,
  archivedSchemas,
  consumerStart,
  entriesFor,
  parseToc,
  type DatabaseService,
} from './plan';

// As `pg_restore --list` prints it (PostgreSQL 15), for two of four schemas.
const LISTING = `;
; Archive created at 2026-11-30 18:36:12 UTC
;     dbname: parley
;
; Selected TOC Entries:
;
7; 2615 20603 SCHEMA - p_message postgres
8; 2615 20612 SCHEMA - p_session postgres
2; 3079 16461 EXTENSION - pg_trgm 
3405; 0 0 COMMENT - EXTENSION pg_trgm 
3406; 0 0 ACL - SCHEMA p_message postgres
217; 1259 20604 TABLE p_message messages postgres
218; 1259 20613 TABLE p_session sessions postgres
3397; 0 20604 TABLE DATA p_message messages postgres
3398; 0 20613 TABLE DATA p_session sessions postgres
3252; 2606 20610 CONSTRAINT p_message messages messages_pkey postgres
3250; 1259 20611 INDEX p_message messages_content_trgm_idx postgres
3260; 2606 20620 FK CONSTRAINT p_session sessions sessions_fk postgres
`;

describe('backup plan', () => {
  it("reads pg_restore's listing: kinds of one or more words, schema, name", () => {
    const toc = parseToc(LISTING);
    expect(toc).toHaveLength(12);
    expect(toc.find((e) => e.line.startsWith('3397;'))).toMatchObject({
      desc: 'TABLE DATA',
      namespace: 'p_message',
      tag: 'messages',
    });
    expect(toc.find((e) => e.line.startsWith('3252;'))).toMatchObject({
      desc: 'CONSTRAINT',
      namespace: 'p_message',
      tag: 'messages messages_pkey',
    });
    expect(toc.find((e) => e.line.startsWith('3406;'))).toMatchObject({ desc: 'ACL', tag: 'SCHEMA p_message' });
    expect(archivedSchemas(toc)).toEqual(['p_message', 'p_session']);
  });

  it("restores one schema's objects, the schema, its grants and the extensions, and nothing of the other", () => {
    const chosen = entriesFor(parseToc(LISTING), new Set(['p_message'])).map((e) => e.line.split(';')[0]);
    expect(chosen).toEqual(['7', '2', '3406', '217', '3397', '3252', '3250']);
    const both = entriesFor(parseToc(LISTING), new Set(['p_message', 'p_session'])).map((e) => e.line.split(';')[0]);
    // Only the extension's comment is left out (only its owner may set it).
    expect(both).toHaveLength(11);
    expect(both).not.toContain('3405');
  });

  it('knows every durable consumer, each on its own service', () => {
    expect(SCHEMA_CONSUMERS.map((c) => c.durable).sort()).toEqual(Object.values(Durables).sort());
    for (const c of SCHEMA_CONSUMERS) expect(c.durable.startsWith(`${c.service}-`)).toBe(true);
  });

  it("skips a restored producer's events, and applies again those of a producer that was not restored", () => {
    const of = (durable: string) => SCHEMA_CONSUMERS.find((c) => c.durable === durable)!;
    const all = new Set<DatabaseService>(DATABASE_SERVICES);
    expect(consumerStart(of(Durables.messageSessionEvents), all)).toEqual({ from: 'restore', producer: 'session' });
    expect(consumerStart(of(Durables.messageSessionEvents), new Set(['message']))).toEqual({
      from: 'last-restore',
      producer: 'session',
    });
    expect(consumerStart(of(Durables.sessionMessageStats), new Set(['session', 'message']))).toEqual({
      from: 'restore',
      producer: 'message',
    });
    // Bots' usage is never discarded: the stream is applied again from its start.
    expect(consumerStart(of(Durables.usageRecords), all)).toEqual({ from: 'first' });
  });
});

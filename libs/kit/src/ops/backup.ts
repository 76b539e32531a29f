// `main.js backup <file>` and `main.js restore <file> [--schema <service>]`: one consistent
// snapshot of every Parley schema, and its restore (docs/operations.md, decisions/0025).
// Loaded only when one of the two commands runs.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamManager,
} from '@nats-io/jetstream';
import {
  DOMAIN_STREAM,
  RedisKeys,
  RestoredEventSchema,
  restoredSubject,
  serviceInboxPrefix,
  type NatsService,
} from '@parley/contracts';
import { serviceDatabaseUrl, serviceSchema, type CommonConfig } from '../config/env';
import { Nats, natsAuthenticator } from '../messaging/nats';
import { createLogger } from '../observability/logger';
import { applicationName } from '../persistence/orm';
import {
  DATABASE_SERVICES,
  SCHEMA_CONSUMERS,
  archivedSchemas,
  consumerStart,
  entriesFor,
  ident,
  isDatabaseService,
  outboxRekeySql,
  parseToc,
  type ConsumerStart,
  type DatabaseService,
} from './plan';

/** A refusal or failure the operator can act on: printed without a stack. */
export class OperationError extends Error {
  override name = 'OperationError';
}

type Say = (line: string) => void;

export interface OperationOptions {
  /** The service whose process runs the command: its NATS credentials and inbox are used. */
  service: string;
  config: CommonConfig;
  env?: NodeJS.ProcessEnv;
  say?: Say;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL's client programs

/**
 * pg_dump, pg_restore or psql: from `PG_BIN_DIR` when set, else the newest
 * /usr/lib/postgresql/<major>/bin (Debian's layout, and the image's), else the PATH.
 * pg_dump must be at least the server's major version.
 */
export function pgTool(name: 'pg_dump' | 'pg_restore' | 'psql', env: NodeJS.ProcessEnv = process.env): string {
  if (env.PG_BIN_DIR) {
    const path = join(env.PG_BIN_DIR, name);
    if (!existsSync(path)) throw new OperationError(`${name} is not in PG_BIN_DIR (${env.PG_BIN_DIR})`);
    return path;
  }
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const majors = readdirSync(base)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const major of majors) {
      const path = join(base, major, 'bin', name);
      if (existsSync(path)) return path;
    }
  }
  return name;
}

/** A libpq target for `url` with its password moved to PGPASSWORD, so no process listing shows it. */
function libpq(url: string, env: NodeJS.ProcessEnv): { dbname: string; env: NodeJS.ProcessEnv } {
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = '';
  return {
    dbname: parsed.toString(),
    // Archive times in UTC, whatever the host's zone.
    env: { ...env, TZ: 'UTC', ...(password ? { PGPASSWORD: password } : {}) },
  };
}

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end; stdout is kept when asked, stderr always (for the error). */
function run(
  program: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { keepStdout?: boolean } = {},
): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (options.keepStdout) stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error) =>
      reject(
        new OperationError(
          `${program} could not run (${error.message}): install PostgreSQL's client programs or set PG_BIN_DIR`,
        ),
      ),
    );
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function failed(step: string, result: Finished): OperationError {
  return new OperationError(`${step} failed (exit ${result.code}):\n${result.stderr.trim()}`);
}

async function withClient<T>(url: string, work: (pg: Client) => Promise<T>): Promise<T> {
  const pg = new Client({ connectionString: url, application_name: 'parley:operations' });
  await pg.connect();
  try {
    return await work(pg);
  } finally {
    await pg.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------
// Schemas

/** The services asked for (`--schema`), or all of them. */
function chosen(names: string[], all: readonly DatabaseService[]): DatabaseService[] {
  if (names.length === 0) return DATABASE_SERVICES.filter((s) => all.includes(s));
  for (const name of names) {
    if (!isDatabaseService(name)) {
      throw new OperationError(`--schema ${name}: not a service with a schema (${DATABASE_SERVICES.join(', ')})`);
    }
  }
  return DATABASE_SERVICES.filter((s) => names.includes(s));
}

/** The one database the services' schemas live in; a snapshot cannot span two. */
function oneDatabase(services: DatabaseService[], config: CommonConfig, env: NodeJS.ProcessEnv): string {
  const urls = new Map(services.map((s) => [s, serviceDatabaseUrl(s, config, env)]));
  const distinct = new Set(urls.values());
  if (distinct.size > 1) {
    const where = [...urls].map(([s, url]) => `${s}: ${new URL(url).host}${new URL(url).pathname}`).join(', ');
    throw new OperationError(
      `these schemas are in more than one database (${where}); one snapshot covers one database: ` +
        `run the command once per database with --schema <service> for each of its services`,
    );
  }
  return [...distinct][0];
}

/** The extensions the schemas' objects use (pg_trgm's operator classes), for a restore into an empty database. */
async function extensionsUsed(pg: Client, schemas: string[]): Promise<string[]> {
  const { rows } = await pg.query<{ extname: string }>(
    `with objects as (
       select 'pg_class'::regclass as classid, c.oid as objid
         from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = any($1)
       union all
       select 'pg_attrdef'::regclass, d.oid
         from pg_attrdef d join pg_class c on c.oid = d.adrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any($1)
     )
     select distinct e.extname
       from objects o
       join pg_depend d on d.classid = o.classid and d.objid = o.objid
       join pg_depend x on x.classid = d.refclassid and x.objid = d.refobjid and x.deptype = 'e'
       join pg_extension e on e.oid = x.refobjid
      order by 1`,
    [schemas],
  );
  return rows.map((r) => r.extname);
}

// ---------------------------------------------------------------------------------------
// backup

export interface BackupResult {
  file: string;
  schemas: string[];
  missing: string[];
  extensions: string[];
  bytes: number;
}

/**
 * One `pg_dump` of every Parley schema of the database (or the services named): one
 * transaction, so the schemas agree with each other as of one moment. Custom format; written
 * to `<file>.partial` and renamed, so a file under the name asked for is always complete.
 */
export async function backup(file: string, names: string[], options: OperationOptions): Promise<BackupResult> {
  const env = options.env ?? process.env;
  const say = options.say ?? (() => undefined);
  const services = chosen(names, DATABASE_SERVICES);
  const url = oneDatabase(services, options.config, env);
  const wanted = services.map((s) => serviceSchema(s, options.config));
  const { existing, extensions } = await withClient(url, async (pg) => {
    const { rows } = await pg.query<{ nspname: string }>(`select nspname from pg_namespace where nspname = any($1)`, [
      wanted,
    ]);
    const found = wanted.filter((s) => rows.some((r) => r.nspname === s));
    return { existing: found, extensions: found.length ? await extensionsUsed(pg, found) : [] };
  });
  const missing = wanted.filter((s) => !existing.includes(s));
  if (existing.length === 0) {
    throw new OperationError(
      `none of the schemas ${wanted.join(', ')} exists in ${new URL(url).pathname.slice(1)} (check DB_SCHEMA_PREFIX)`,
    );
  }
  for (const schema of missing) say(`no schema ${schema} (its service never started): left out`);

  const target = libpq(url, env);
  const partial = `${file}.partial`;
  const args = [
    '--format=custom',
    '--no-password',
    `--file=${partial}`,
    ...existing.map((s) => `--schema=${ident(s)}`),
    ...extensions.map((e) => `--extension=${ident(e)}`),
    `--dbname=${target.dbname}`,
  ];
  const result = await run(pgTool('pg_dump', env), args, target.env);
  if (result.code !== 0) {
    if (existsSync(partial)) unlinkSync(partial);
    throw failed('pg_dump', result);
  }
  renameSync(partial, file);
  const bytes = statSync(file).size;
  say(
    `backed up ${existing.join(', ')}${extensions.length ? ` (extensions: ${extensions.join(', ')})` : ''} ` +
      `to ${file} (${bytes} bytes)`,
  );
  return { file, schemas: existing, missing, extensions, bytes };
}

// ---------------------------------------------------------------------------------------
// restore

export interface RestoreResult {
  schemas: string[];
  consumers: { durable: string; start: ConsumerStart['from'] | 'no stream'; after?: number }[];
  caches: 'reset' | 'not reset';
}

/** Parley's connections to the schemas (named by `application_name`, see createOrm). */
async function connectedTo(pg: Client, schemas: string[]): Promise<string[]> {
  const { rows } = await pg.query<{ application_name: string; n: number }>(
    `select application_name, count(*)::int as n from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and application_name = any($1)
      group by application_name order by 1`,
    [schemas.map(applicationName)],
  );
  return rows.map((r) => `${r.application_name} (${r.n})`);
}

/** Feeds `head`, then pg_restore's script of the entries in the file `list`, then `tail` to one psql session. */
function restoreScript(
  file: string,
  list: string,
  head: string,
  tail: string,
  target: { dbname: string; env: NodeJS.ProcessEnv },
  env: NodeJS.ProcessEnv,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const psql = spawn(
      pgTool('psql', env),
      ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', `--dbname=${target.dbname}`],
      { env: target.env, stdio: ['pipe', 'ignore', 'pipe'] },
    );
    const restore = spawn(pgTool('pg_restore', env), [`--use-list=${list}`, '--file=-', file], {
      env: target.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let psqlErr = '';
    let restoreErr = '';
    psql.stderr.on('data', (chunk: Buffer) => (psqlErr += chunk.toString()));
    restore.stderr.on('data', (chunk: Buffer) => (restoreErr += chunk.toString()));
    const spawnFailed = (program: string) => (error: Error) =>
      reject(new OperationError(`${program} could not run (${error.message}): set PG_BIN_DIR`));
    psql.on('error', spawnFailed('psql'));
    restore.on('error', spawnFailed('pg_restore'));
    // psql may stop early (an error); what is still being written to it then goes nowhere.
    psql.stdin.on('error', () => undefined);

    psql.stdin.write(head);
    restore.stdout.pipe(psql.stdin, { end: false });
    let restoreCode: number | null = null;
    restore.on('close', (code) => {
      restoreCode = code;
      // Without COMMIT, psql's end of input rolls the transaction back.
      psql.stdin.end(code === 0 ? tail : '');
    });
    psql.on('close', (code) => {
      if (restoreCode !== 0) {
        reject(
          new OperationError(`pg_restore failed (exit ${restoreCode}); nothing was changed:\n${restoreErr.trim()}`),
        );
      } else if (code !== 0) {
        reject(new OperationError(`psql failed (exit ${code}); nothing was changed:\n${psqlErr.trim()}`));
      } else {
        resolve();
      }
    });
  });
}

async function consumerInfo(jsm: JetStreamManager, stream: string, durable: string) {
  try {
    return await jsm.consumers.info(stream, durable);
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound) return undefined;
    throw error;
  }
}

/**
 * Publishes `evt.restored.<service>` for each restored schema on the DOMAIN stream (when it
 * exists) and answers their stream sequences.
 */
async function publishMarkers(
  nats: Nats,
  jsm: JetStreamManager,
  services: DatabaseService[],
  config: CommonConfig,
  file: string,
): Promise<Map<DatabaseService, number>> {
  const markers = new Map<DatabaseService, number>();
  if (!(await streamExists(jsm, nats.stream(DOMAIN_STREAM)))) return markers;
  const js = jetstream(nats.connection);
  for (const service of services) {
    const event = RestoredEventSchema.parse({
      service,
      schema: serviceSchema(service, config),
      backup: basename(file).slice(0, 255),
      restored_at: new Date().toISOString(),
    });
    const ack = await js.publish(nats.subject(restoredSubject(service)), JSON.stringify(event), {
      msgID: randomUUID(),
    });
    markers.set(service, ack.seq);
  }
  return markers;
}

/** The stream sequence of the producer's last restore marker, if any. */
async function lastMarker(
  jsm: JetStreamManager,
  nats: Nats,
  stream: string,
  producer: DatabaseService,
): Promise<number | undefined> {
  try {
    const found = await jsm.streams.getMessage(stream, { last_by_subj: nats.subject(restoredSubject(producer)) });
    return found?.seq;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.NoMessageFound) return undefined;
    throw error;
  }
}

async function streamExists(jsm: JetStreamManager, stream: string): Promise<boolean> {
  try {
    await jsm.streams.info(stream);
    return true;
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return false;
    throw error;
  }
}

/**
 * Restores the schemas of a backup (all it holds, or the services named) in one transaction:
 * each schema is dropped and created again as it was, or nothing changes. Refused while a
 * Parley service is connected to one of them. Then the restored services' durable consumers
 * start again where `consumerStart` says, their outboxes' rows get new ids (they are relayed
 * again), and the caches derived from their data are reset in Redis.
 */
export async function restore(file: string, names: string[], options: OperationOptions): Promise<RestoreResult> {
  const env = options.env ?? process.env;
  const say = options.say ?? (() => undefined);
  const { config } = options;
  if (!existsSync(file)) throw new OperationError(`no backup at ${file}`);

  // 1. What the archive holds, and which of its schemas to restore.
  const listing = await run(pgTool('pg_restore', env), ['--list', file], env, { keepStdout: true });
  if (listing.code !== 0) throw failed('pg_restore --list', listing);
  const toc = parseToc(listing.stdout);
  const archived = archivedSchemas(toc);
  const ours = new Map(DATABASE_SERVICES.map((s) => [serviceSchema(s, config), s]));
  const foreign = archived.filter((s) => !ours.has(s));
  if (foreign.length > 0) {
    throw new OperationError(
      `the backup holds ${foreign.join(', ')}, which are not this deployment's schemas ` +
        `(${[...ours.keys()].join(', ')}; DB_SCHEMA_PREFIX=${JSON.stringify(config.DB_SCHEMA_PREFIX)})`,
    );
  }
  const inArchive = archived.map((s) => ours.get(s) as DatabaseService);
  const services = chosen(names, inArchive);
  const absent = names.filter((n) => !inArchive.includes(n as DatabaseService));
  if (absent.length > 0) throw new OperationError(`the backup holds no schema for ${absent.join(', ')}`);
  if (services.length === 0) throw new OperationError('the backup holds no Parley schema');
  const schemas = services.map((s) => serviceSchema(s, config));
  const restored = new Set(services);
  const url = oneDatabase(services, config, env);

  // 2. Before anything changes: no service is connected, and NATS answers with consumers as expected.
  const busy = await withClient(url, (pg) => connectedTo(pg, schemas));
  if (busy.length > 0) {
    throw new OperationError(
      `stop these services first (scale them to 0); still connected: ${busy.join(', ')}. Nothing was changed`,
    );
  }
  const logger = createLogger('restore', 'silent');
  const nats = await Nats.connect({
    url: config.NATS_URL,
    prefix: config.NATS_SUBJECT_PREFIX,
    name: `parley-restore`,
    logger,
    inboxPrefix: serviceInboxPrefix(options.service as NatsService),
    authenticator: natsAuthenticator(config),
  }).catch((error: Error) => {
    throw new OperationError(`NATS (${config.NATS_URL}) is needed to restore: ${error.message}. Nothing was changed`);
  });
  try {
    const jsm = await jetstreamManager(nats.connection);
    const consumers = SCHEMA_CONSUMERS.filter((c) => restored.has(c.service));
    for (const c of consumers) {
      const info = await consumerInfo(jsm, nats.stream(c.stream), c.durable);
      const expected = nats.subject(c.filterSubject);
      if (info && info.config.filter_subject !== expected) {
        throw new OperationError(
          `consumer ${c.durable} on ${nats.stream(c.stream)} filters ${info.config.filter_subject}, not ${expected}. Nothing was changed`,
        );
      }
    }

    // 3. The schemas, in one transaction.
    const scratch = mkdtempSync(join(tmpdir(), 'parley-restore-'));
    try {
      const list = join(scratch, 'entries.list');
      writeFileSync(
        list,
        `${entriesFor(toc, new Set(schemas))
          .map((e) => e.line)
          .join('\n')}\n`,
      );
      const head =
        `BEGIN;\nSET client_min_messages = warning;\nSET lock_timeout = '30s';\n` +
        schemas.map((s) => `DROP SCHEMA IF EXISTS ${ident(s)} CASCADE;\n`).join('');
      const tail = schemas.map(outboxRekeySql).join('') + 'COMMIT;\n';
      await restoreScript(file, list, head, tail, libpq(url, env), env);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    say(`restored ${schemas.join(', ')} from ${file}`);

    // 4. A marker per restored schema, then where the restored services' consumers start again.
    const markers = await publishMarkers(nats, jsm, services, config, file);
    const positions: RestoreResult['consumers'] = [];
    for (const c of consumers) {
      const stream = nats.stream(c.stream);
      if (!(await streamExists(jsm, stream))) {
        positions.push({ durable: c.durable, start: 'no stream' });
        say(`consumer ${c.durable}: no stream ${stream} yet; the service creates both`);
        continue;
      }
      const start = consumerStart(c, restored);
      let after: number | undefined;
      if (start.from === 'restore') after = markers.get(start.producer);
      else if (start.from === 'last-restore') after = await lastMarker(jsm, nats, stream, start.producer);
      const previous = await consumerInfo(jsm, stream, c.durable);
      if (previous) await jsm.consumers.delete(stream, c.durable);
      const tuning: Partial<ConsumerConfig> = previous
        ? {
            max_deliver: previous.config.max_deliver,
            ack_wait: previous.config.ack_wait,
            max_ack_pending: previous.config.max_ack_pending,
          }
        : {};
      await jsm.consumers.add(stream, {
        durable_name: c.durable,
        ack_policy: AckPolicy.Explicit,
        ...(after === undefined
          ? { deliver_policy: DeliverPolicy.All }
          : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: after + 1 }),
        filter_subject: nats.subject(c.filterSubject),
        ...tuning,
      });
      positions.push({ durable: c.durable, start: start.from, after });
      say(
        start.from === 'restore'
          ? `consumer ${c.durable}: skips ${c.producer}'s events up to this restore (${stream} ${after}), as ${c.producer} was restored too`
          : `consumer ${c.durable}: applies ${stream} again from ${after === undefined ? 'its first event' : `${after + 1} (after ${c.producer}'s last restore)`}; what is already applied changes nothing`,
      );
    }

    // 5. What Redis derived from the restored data.
    const caches = await resetCaches(restored, config, say);
    return { schemas, consumers: positions, caches };
  } finally {
    await nats.close();
  }
}

/**
 * A restored access schema: cached permission decisions and API keys are dropped by bumping
 * the access epoch. A restored usage schema: the quota counters are deleted, to be rebuilt
 * from `usage_daily`. Redis holds nothing else that the restored data decides.
 */
async function resetCaches(
  restored: ReadonlySet<DatabaseService>,
  config: CommonConfig,
  say: Say,
): Promise<'reset' | 'not reset'> {
  if (!restored.has('access') && !restored.has('usage')) return 'reset';
  const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const prefix = config.NATS_SUBJECT_PREFIX;
    if (restored.has('access')) await redis.incr(RedisKeys.accessEpoch(prefix));
    if (restored.has('usage')) {
      const pattern = RedisKeys.usageQuota(prefix, '*', '*', '*');
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    }
    say('reset the caches in Redis');
    return 'reset';
  } catch (error) {
    say(
      `could not reset the caches in Redis (${error instanceof Error ? error.message : String(error)}): ` +
        `cached decisions expire within seconds, quota counters after USAGE_QUOTA_CACHE_SECONDS`,
    );
    return 'not reset';
  } finally {
    redis.disconnect();
  }
}

// ---------------------------------------------------------------------------------------
// The commands

const USAGE = `usage: main.js backup <file> [--schema <service>]...
       main.js restore <file> [--schema <service>]...
services with a schema: ${DATABASE_SERVICES.join(', ')}`;

function parseArgs(args: string[]): { file: string; names: string[] } {
  const names: string[] = [];
  let file: string | undefined;
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i];
    if (arg === '--schema') {
      const value = args[(i += 1)];
      if (!value) throw new OperationError(`--schema needs a service\n${USAGE}`);
      names.push(value);
    } else if (arg.startsWith('--schema=')) {
      names.push(arg.slice('--schema='.length));
    } else if (arg.startsWith('-') || file !== undefined) {
      throw new OperationError(`unexpected argument ${arg}\n${USAGE}`);
    } else {
      file = arg;
    }
  }
  if (!file) throw new OperationError(`no file given\n${USAGE}`);
  return { file, names };
}

/** Runs `backup` or `restore` with the process's arguments; an OperationError is printed and exits 1. */
export async function runOperation(
  command: 'backup' | 'restore',
  args: string[],
  service: string,
  config: CommonConfig,
): Promise<void> {
  const say: Say = (line) => process.stdout.write(`parley ${command}: ${line}\n`);
  try {
    const { file, names } = parseArgs(args);
    if (command === 'backup') await backup(file, names, { service, config, say });
    else await restore(file, names, { service, config, say });
  } catch (error) {
    if (!(error instanceof OperationError)) throw error;
    process.stderr.write(`parley ${command}: ${error.message}\n`);
    process.exitCode = 1;
  }
}

import { z } from 'zod';
import type { EventTimeLimits } from '@parley/contracts';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment once; a bad or missing variable stops start-up with its name. */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  // `NAME=` (as compose writes `${NAME:-}`) means unset, so its default applies.
  const result = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.map(String).join('.');
    const value = env[name];
    const shown =
      value === undefined
        ? '(unset)'
        : /KEY|PASSWORD|SECRET|TOKEN|SEED|CREDS/.test(name)
          ? '(hidden)'
          : JSON.stringify(value);
    return `${name}=${shown}: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);
const url = (protocols: string[], fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((v) => protocols.some((p) => v.startsWith(`${p}://`)), `must start with ${protocols.join(':// or ')}://`);

/** One NATS server's URL (`nats://host:port`, `tls://…`, `ws://…`, `wss://…`, or `host:port`). */
const NATS_SERVER_URL = /^((nats|tls|ws|wss):\/\/)?[^\s,/]+$/;

/** The servers of `NATS_URL`, a comma-separated list (a cluster's nodes), blanks around each dropped. */
export const natsServers = (value: string): string[] =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Variables every service reads (names and defaults as API.md fixes them). */
export const commonEnvShape = {
  DATABASE_URL: url(['postgres', 'postgresql'], 'postgres://postgres@127.0.0.1:5432/parley'),
  /** One server, or a cluster's servers separated by commas (the client picks one and fails over). */
  NATS_URL: z
    .string()
    .default('nats://127.0.0.1:4222')
    .refine((v) => {
      const servers = natsServers(v);
      return servers.length > 0 && servers.every((s) => NATS_SERVER_URL.test(s));
    }, 'one or more NATS server URLs separated by commas (nats://host:port, tls://host:port or host:port)'),
  /**
   * Copies JetStream keeps of each stream a service creates (USAGE, DOMAIN, DLQ): 1 on a single
   * server, 3 on a three-node cluster. A stream that exists with another count is changed to it.
   */
  JETSTREAM_REPLICAS: z.coerce
    .number({ error: 'an integer from 1 to 5' })
    .int('an integer from 1 to 5')
    .min(1, 'an integer from 1 to 5')
    .max(5, 'an integer from 1 to 5')
    .default(1),
  NATS_SUBJECT_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]*$/, 'letters, digits, _ and - only')
    .default(''),
  REDIS_URL: url(['redis', 'rediss'], 'redis://127.0.0.1:6379'),
  DB_SCHEMA_PREFIX: z
    .string()
    .regex(/^[a-z0-9_]*$/, 'lower-case letters, digits and _ only')
    .default(''),
  HTTP_HOST: z.string().default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NATS_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(5000),
  /** How the service logs in to NATS: at most one of these (none for a server without authorization). */
  NATS_CREDS: z.string().min(1).optional(),
  NATS_USER: z.string().min(1).optional(),
  NATS_PASSWORD: z.string().min(1).optional(),
  NATS_TOKEN: z.string().min(1).optional(),
  NATS_NKEY_SEED: z.string().min(1).optional(),
  /** Signs list cursors; unset: a key generated once and kept in the service's schema. */
  CURSOR_SECRET: z.string().min(16, 'at least 16 characters').optional(),
  MIGRATE_ON_START: z
    .enum(['true', 'false'])
    .default('true')
    .transform((v) => v === 'true'),
  /**
   * PostgreSQL `statement_timeout` of every pooled connection: a statement on the request path
   * running longer is cancelled and the request answers 503 QUERY_TIMEOUT. Below
   * NATS_REQUEST_TIMEOUT_MS, so the caller hears why rather than waiting out its own timeout.
   */
  DATABASE_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(1).max(3_600_000).default(3000),
  /** The timeout background work (migrations, consumers, rollups, re-pricing) sets for itself; 0: none. */
  DATABASE_BACKGROUND_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(0).max(86_400_000).default(600_000),
  /** A Redis command unanswered this long fails, and the caller goes on without Redis (degraded). */
  REDIS_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(500),
};

/**
 * How far a usage or activity event's time may lie from now before it is refused as absurd:
 * read by the gateway (HTTP ingestion answers 400) and the usage service (dead letter) alike.
 */
export const eventTimeEnvShape = {
  USAGE_MAX_EVENT_AGE_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  USAGE_MAX_CLOCK_SKEW_SECONDS: z.coerce.number().int().min(0).max(86_400).default(300),
};
export const eventTimeLimits = (config: {
  USAGE_MAX_EVENT_AGE_DAYS: number;
  USAGE_MAX_CLOCK_SKEW_SECONDS: number;
}): EventTimeLimits => ({
  maxAgeMs: config.USAGE_MAX_EVENT_AGE_DAYS * 24 * 60 * 60 * 1000,
  maxSkewMs: config.USAGE_MAX_CLOCK_SKEW_SECONDS * 1000,
});

export const commonEnvSchema = z.object(commonEnvShape);
export type CommonConfig = z.infer<typeof commonEnvSchema>;

/** The database URL of one service: `<SERVICE>_DATABASE_URL` wins over `DATABASE_URL`. */
export function serviceDatabaseUrl(
  service: string,
  config: CommonConfig,
  env: NodeJS.ProcessEnv = process.env,
): string {
  return env[`${service.toUpperCase()}_DATABASE_URL`] ?? config.DATABASE_URL;
}

/** The schema a service owns, after DB_SCHEMA_PREFIX (test runs use their own). */
export function serviceSchema(service: string, config: Pick<CommonConfig, 'DB_SCHEMA_PREFIX'>): string {
  return `${config.DB_SCHEMA_PREFIX}${service}`;
}

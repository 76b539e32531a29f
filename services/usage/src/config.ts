import { z } from 'zod';
import { commonEnvShape, eventTimeEnvShape, parseEnv, port } from '@parley/kit';

export const UsageConfigSchema = z.object({
  ...commonEnvShape,
  ...eventTimeEnvShape,
  USAGE_HTTP_PORT: port(8084),
  /** Most events written in one transaction. */
  USAGE_BATCH_SIZE: z.coerce.number().int().min(1).max(5000).default(500),
  /** Batches one instance writes at the same time (each its own transaction). */
  USAGE_INGEST_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(2),
  /** The USAGE stream drops a re-published Nats-Msg-Id within this window; a bot's retries must end inside it. */
  USAGE_DUPLICATE_WINDOW_SECONDS: z.coerce
    .number()
    .int()
    .min(10)
    .max(7 * 24 * 3600)
    .default(900),
  /** How long the USAGE stream keeps events after they are stored (for replay and reconciliation). */
  USAGE_STREAM_MAX_AGE_HOURS: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 365)
    .default(72),
  /** Size bound of the USAGE stream; when reached, publishes are refused, never old events dropped. -1: none. */
  USAGE_STREAM_MAX_BYTES: z.coerce.number().int().min(-1).default(-1),
  /** Lifetime of a bot's quota counters in Redis before they are rebuilt from Postgres. */
  USAGE_QUOTA_CACHE_SECONDS: z.coerce.number().int().min(1).max(86_400).default(60),
});
export type UsageConfig = z.infer<typeof UsageConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): UsageConfig => parseEnv(UsageConfigSchema, env);
export const USAGE_CONFIG = Symbol('parley:usage-config');

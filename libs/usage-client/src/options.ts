import { z } from 'zod';

export interface UsageClientOptions {
  botId: string;
  /** The deployment's NATS_SUBJECT_PREFIX; empty in production. */
  subjectPrefix?: string;
  /** Most publishes awaiting JetStream's ack at once; further reports wait for a slot (backpressure). Default 1024. */
  maxPending?: number;
  /**
   * How long one report is retried (same Nats-Msg-Id, so the stream stores it once) before its promise rejects.
   * Must stay under the USAGE stream's duplicate window (15 minutes by default). Default 5 minutes.
   */
  retryHorizonMs?: number;
  /** Wait for one publish ack. Default 5000. */
  publishTimeoutMs?: number;
  /** Wait for a quota answer. Default 5000. */
  requestTimeoutMs?: number;
}

export type ResolvedOptions = Required<UsageClientOptions>;

export const DEFAULT_MAX_PENDING = 1024;
export const DEFAULT_RETRY_HORIZON_MS = 5 * 60 * 1000;
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;

const OptionsSchema = z.object({
  botId: z.uuid('must be a UUID'),
  subjectPrefix: z
    .string()
    .regex(/^[^\s*>]*$/, 'must not contain spaces or wildcards')
    .default(''),
  maxPending: z.number().int('must be an integer').min(1).default(DEFAULT_MAX_PENDING),
  retryHorizonMs: z.number().min(0).finite().default(DEFAULT_RETRY_HORIZON_MS),
  publishTimeoutMs: z.number().int('must be an integer').min(1).default(DEFAULT_PUBLISH_TIMEOUT_MS),
  requestTimeoutMs: z.number().int('must be an integer').min(1).default(DEFAULT_REQUEST_TIMEOUT_MS),
});

/** Fills the defaults; throws a TypeError naming every bad option. */
export function resolveOptions(options: UsageClientOptions): ResolvedOptions {
  const parsed = OptionsSchema.safeParse(options);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || 'options'}: ${i.message}`);
    throw new TypeError(`invalid UsageClient options: ${problems.join('; ')}`);
  }
  return parsed.data;
}

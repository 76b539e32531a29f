import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { DLQ_DOMAIN, DLQ_STREAM, DLQ_USAGE, DOMAIN_STREAM, DOMAIN_SUBJECTS } from '@parley/contracts';
import type { Nats } from './nats';

const DAY_MS = 24 * 60 * 60 * 1000;

export interface StreamSpec {
  name: string;
  subjects: string[];
  maxAgeMs: number;
  duplicateWindowMs: number;
  replicas?: number;
  /** Total size bound; when reached, new publishes are refused (never old messages dropped). -1: none. */
  maxBytes?: number;
  /** Largest message accepted. -1: the server's max payload. */
  maxMsgSize?: number;
}

/** The streams every service may publish to; names and subjects get the deployment's prefix. */
export const DOMAIN_STREAM_SPEC: StreamSpec = {
  name: DOMAIN_STREAM,
  subjects: [DOMAIN_SUBJECTS],
  maxAgeMs: 7 * DAY_MS,
  // An outbox row is re-published under the same Nats-Msg-Id until acknowledged; a day covers any outage we ride out.
  duplicateWindowMs: DAY_MS,
};
export const DLQ_STREAM_SPEC: StreamSpec = {
  name: DLQ_STREAM,
  subjects: [DLQ_DOMAIN, DLQ_USAGE],
  maxAgeMs: 30 * DAY_MS,
  duplicateWindowMs: 2 * 60 * 1000,
};

/** Creates the stream if it is missing and brings subjects and limits up to date if it exists. Idempotent. */
export async function ensureStream(nats: Nats, spec: StreamSpec, jsm?: JetStreamManager): Promise<void> {
  const manager = jsm ?? (await jetstreamManager(nats.connection));
  const config: Partial<StreamConfig> & { name: string } = {
    name: nats.stream(spec.name),
    subjects: spec.subjects.map((s) => nats.subject(s)),
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(spec.maxAgeMs),
    duplicate_window: nanos(spec.duplicateWindowMs),
    max_bytes: spec.maxBytes ?? -1,
    max_msg_size: spec.maxMsgSize ?? -1,
    discard: DiscardPolicy.New,
    num_replicas: spec.replicas ?? Number(process.env.JETSTREAM_REPLICAS ?? 1),
  };
  try {
    const info = await manager.streams.info(config.name);
    const current = info.config;
    const same =
      JSON.stringify([...current.subjects].sort()) === JSON.stringify([...(config.subjects ?? [])].sort()) &&
      current.max_age === config.max_age &&
      current.duplicate_window === config.duplicate_window &&
      current.max_bytes === config.max_bytes &&
      current.max_msg_size === config.max_msg_size &&
      current.discard === config.discard;
    if (!same) await manager.streams.update(config.name, { ...current, ...config });
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
      await manager.streams.add(config);
      return;
    }
    throw error;
  }
}

/** Removes every stream whose name starts with the prefix: test runs clean up after themselves. */
export async function deleteStreams(nats: Nats): Promise<void> {
  if (!nats.prefix) throw new Error('refusing to delete streams without a NATS_SUBJECT_PREFIX');
  const jsm = await jetstreamManager(nats.connection);
  const head = nats.stream('');
  for await (const name of jsm.streams.names()) {
    if (name.startsWith(head)) await jsm.streams.delete(name);
  }
}

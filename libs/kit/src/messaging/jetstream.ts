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
import { errors as natsErrors, nanos } from '@nats-io/transport-node';
import { DLQ_DOMAIN, DLQ_STREAM, DLQ_USAGE, DOMAIN_STREAM, DOMAIN_SUBJECTS } from '@parley/contracts';
import { ConfigError } from '../config/env';
import type { Nats } from './nats';

const DAY_MS = 24 * 60 * 60 * 1000;

export interface StreamSpec {
  name: string;
  subjects: string[];
  maxAgeMs: number;
  duplicateWindowMs: number;
  /** Copies JetStream keeps; unset: the process's `JETSTREAM_REPLICAS` (`Nats.streamReplicas`). */
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

/**
 * The server's refusals that mean "not that many replicas here": no cluster (10074), or fewer
 * JetStream servers (up) than replicas (10005 no suitable peers, 10023 insufficient resources).
 */
const PLACEMENT_REFUSED = new Set([10005, 10023, 10074]);

/**
 * Creates the stream if it is missing and brings subjects, limits and replicas up to date if it
 * exists. Idempotent. A replica count the servers cannot hold stops start-up with a
 * ConfigError naming `JETSTREAM_REPLICAS`, not a stack trace.
 */
export async function ensureStream(nats: Nats, spec: StreamSpec, jsm?: JetStreamManager): Promise<void> {
  const manager = jsm ?? (await jetstreamManager(nats.connection));
  const replicas = spec.replicas ?? nats.streamReplicas;
  const name = nats.stream(spec.name);
  const server = nats.connection.info;
  // A single server (2.9 at least) accepts num_replicas > 1 on an update and keeps one copy: refuse it here.
  if (replicas > 1 && server && !server.cluster) {
    throw new ConfigError([
      `JETSTREAM_REPLICAS=${replicas}: the NATS server ${server.server_name} is not part of a cluster, so ` +
        `JetStream can keep one copy of ${name}; set JETSTREAM_REPLICAS=1, or list a NATS cluster's ` +
        `servers in NATS_URL`,
    ]);
  }
  const config: Partial<StreamConfig> & { name: string } = {
    name,
    subjects: spec.subjects.map((s) => nats.subject(s)),
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: nanos(spec.maxAgeMs),
    duplicate_window: nanos(spec.duplicateWindowMs),
    max_bytes: spec.maxBytes ?? -1,
    max_msg_size: spec.maxMsgSize ?? -1,
    discard: DiscardPolicy.New,
    num_replicas: replicas,
  };
  try {
    await untilAnswered(`provisioning the stream ${name}`, async () => {
      let current: StreamConfig;
      try {
        current = (await manager.streams.info(name)).config;
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
          await manager.streams.add(config);
          return;
        }
        throw error;
      }
      if (sameStream(current, config)) return;
      if (current.num_replicas !== config.num_replicas) {
        // Every service sharing the stream must say the same, or they change it back and forth at each start.
        nats.logger?.warn(
          { stream: name, from: current.num_replicas, to: replicas },
          'changing the replicas of a stream to JETSTREAM_REPLICAS',
        );
      }
      await manager.streams.update(name, { ...current, ...config });
    });
  } catch (error) {
    if (error instanceof JetStreamApiError && PLACEMENT_REFUSED.has(error.code)) {
      throw new ConfigError([
        `JETSTREAM_REPLICAS=${replicas}: NATS cannot keep ${replicas} copies of ${name} ` +
          `(${error.message}): the cluster has fewer JetStream servers than that, or not that many are up; ` +
          `set JETSTREAM_REPLICAS to at most the number of JetStream servers in the cluster`,
      ]);
    }
    throw error;
  }
}

/** How many times a provisioning step is tried while JetStream does not answer in time. */
const PROVISION_ATTEMPTS = 6;

/**
 * Runs an idempotent provisioning step (look, then create or update) again while JetStream does
 * not answer in time. On a cluster that is electing leaders, or creating replicated streams and
 * consumers for several services starting at once, an answer can take longer than the request
 * timeout while the work itself goes on; and a 2.9 server answers only one of several updates
 * that change a stream's replicas at the same moment. The next attempt looks again and does
 * only what is still missing. Any other error ends it at once.
 */
export async function untilAnswered<T>(what: string, step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (error) {
      if (!(error instanceof natsErrors.TimeoutError)) throw error;
      if (attempt >= PROVISION_ATTEMPTS) {
        throw new Error(`JetStream did not answer in time, ${attempt} times, ${what}`, { cause: error });
      }
      await new Promise((r) => setTimeout(r, 250 * attempt));
    }
  }
}

function sameStream(current: StreamConfig, wanted: Partial<StreamConfig>): boolean {
  return (
    JSON.stringify([...current.subjects].sort()) === JSON.stringify([...(wanted.subjects ?? [])].sort()) &&
    current.max_age === wanted.max_age &&
    current.duplicate_window === wanted.duplicate_window &&
    current.max_bytes === wanted.max_bytes &&
    current.max_msg_size === wanted.max_msg_size &&
    current.discard === wanted.discard &&
    current.num_replicas === wanted.num_replicas
  );
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

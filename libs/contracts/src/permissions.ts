import { AccessControlRpc } from './access-control';
import { AccessRpc } from './access';
import { DLQ_DOMAIN, DLQ_USAGE, DOMAIN_SUBJECTS } from './events';
import { MessageRpc, ReadScopeRpc, SessionAccessRpc, SessionScopeFenceRpc } from './message';
import { prefixed, type RpcContract } from './rpc';
import { SessionRpc } from './session';
import { LIVE_SESSION_SUBJECTS } from './transport';
import {
  QuotaCheckRpc,
  USAGE_ACTIVITY_SUBJECTS,
  USAGE_EVENT_SUBJECTS,
  UsageRpc,
  activitySubject,
  usageSubject,
} from './usage';

/**
 * Who may publish and subscribe what on NATS, derived from the subjects in this package.
 * Deployments generate their NATS users from these (deploy/nats/init), and the access service
 * mints bot credentials with them, so a new subject changes every permission file at once.
 */

export const NATS_SERVICES = ['gateway', 'access', 'session', 'message', 'usage'] as const;
export type NatsService = (typeof NATS_SERVICES)[number];

/** Where a service receives its replies: no other user may subscribe there. */
export const serviceInboxPrefix = (service: NatsService) => `_INBOX_${service}`;
/** Where a bot receives its replies. */
export const botInboxPrefix = (botId: string) => `_INBOX_${botId}`;

/** The largest message a bot may publish (one usage or activity event is at most 64 KiB). */
export const BOT_MAX_PAYLOAD = 64 * 1024;

export interface NatsPermissions {
  publish: string[];
  subscribe: string[];
  /** May answer the requests it receives (publish to their reply subjects), and only those. */
  allowResponses: boolean;
}

/** Every request/reply contract, by the service that serves it (the subject's first token). */
export function requestContracts(): RpcContract[] {
  const groups: Record<string, RpcContract>[] = [AccessRpc, AccessControlRpc, SessionRpc, MessageRpc, UsageRpc];
  const single = [SessionAccessRpc, SessionScopeFenceRpc, ReadScopeRpc, QuotaCheckRpc];
  const all = [...groups.flatMap((g) => Object.values(g)), ...single];
  return [...new Map(all.map((c) => [c.subject, c])).values()];
}

const servedBy = (service: NatsService) =>
  requestContracts()
    .map((c) => c.subject)
    .filter((subject) => subject.split('.')[0] === service)
    .sort();

/** JetStream's API and acks; every service provisions streams and consumes. */
const JETSTREAM = ['$JS.API.>', '$JS.ACK.>', '$JS.FC.>'];

/**
 * A service's permissions: it serves its own request subjects and reads its own inbox; it
 * may call every other service, write domain events, dead letters and live fan-out, use
 * JetStream, and ask for chunks of a large reply in another service's inbox.
 */
export function servicePermissions(service: NatsService, prefix = ''): NatsPermissions {
  const p = (subject: string) => prefixed(prefix, subject);
  const requests = [...new Set(requestContracts().map((c) => c.subject))].sort();
  // Domain events carry ids and counters, no secrets: any service may follow them on core NATS.
  const subscribe = [...servedBy(service).map(p), p(DOMAIN_SUBJECTS), `${serviceInboxPrefix(service)}.>`];
  if (service === 'gateway') subscribe.push(p(LIVE_SESSION_SUBJECTS));
  const publish = [
    ...requests.map(p),
    p(DOMAIN_SUBJECTS),
    p(DLQ_DOMAIN),
    p(DLQ_USAGE),
    p(LIVE_SESSION_SUBJECTS),
    p(USAGE_EVENT_SUBJECTS),
    p(USAGE_ACTIVITY_SUBJECTS),
    ...JETSTREAM,
    ...NATS_SERVICES.map((s) => `${serviceInboxPrefix(s)}.>`),
  ];
  return { publish: [...new Set(publish)], subscribe, allowResponses: true };
}

/** A bot's permissions: its own usage and activity subjects, the quota check, its own inbox. */
export function botPermissions(botId: string, prefix = ''): NatsPermissions {
  const p = (subject: string) => prefixed(prefix, subject);
  return {
    publish: [p(usageSubject(botId)), p(activitySubject(botId)), p(QuotaCheckRpc.subject)],
    subscribe: [`${botInboxPrefix(botId)}.>`],
    allowResponses: false,
  };
}

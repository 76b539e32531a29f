/**
 * Every Redis key Parley writes, in one place. Each starts with `parley:<NATS_SUBJECT_PREFIX>:`
 * so deployments (and test runs) sharing one Redis never collide. Redis holds only what can be
 * rebuilt: losing any of these loses no data.
 */
const head = (prefix: string) => `parley:${prefix}`;

export const RedisKeys = {
  /** Bumped after every committed access change: cached decisions and keys under an older epoch are ignored. */
  accessEpoch: (prefix: string) => `${head(prefix)}:access:epoch`,
  /** A cached permission decision. */
  accessDecision: (prefix: string, epoch: string, hash: string) => `${head(prefix)}:access:decision:${epoch}:${hash}`,
  /** Failed logins counted for one username, from every address. */
  loginFailuresByUser: (prefix: string, username: string) => `${head(prefix)}:login:user:${username.toLowerCase()}`,
  /** Failed logins counted for one client address (an IPv4 address or an IPv6 /64), for every username. */
  loginFailuresByAddress: (prefix: string, address: string) => `${head(prefix)}:login:addr:${address}`,
  /** Failed logins counted for one username from one client address (the address holds no `|`). */
  loginFailuresByUserAddress: (prefix: string, username: string, address: string) =>
    `${head(prefix)}:login:pair:${address}|${username.toLowerCase()}`,
  /** The gateway's cache of a verified API key. */
  gatewayKey: (prefix: string, epoch: string, hash: string) => `${head(prefix)}:gateway:key:${epoch}:${hash}`,
  /** Requests of one principal in one minute window. */
  rateWindow: (prefix: string, principalType: string, principalId: string, window: number) =>
    `${head(prefix)}:rate:${principalType}:${principalId}:${window}`,
  /** The live streams (or exports) one principal holds open: a sorted set of lease ids scored by expiry (ms). */
  gatewayLeases: (prefix: string, kind: string, principalType: string, principalId: string) =>
    `${head(prefix)}:gateway:leases:${kind}:${principalType}:${principalId}`,
  /**
   * A bot's usage counters for one budget period: a hash of each day's totals per currency with
   * their revisions. (Named apart from the counters of before, which held running sums.)
   */
  usageQuota: (prefix: string, botId: string, period: string, periodKey: string) =>
    `${head(prefix)}:usage:totals:${botId}:${period}:${periodKey}`,
} as const;

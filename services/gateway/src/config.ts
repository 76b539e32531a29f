import { z } from 'zod';
import { trustProxyEntryProblem } from './http/client-address';
import { commonEnvShape, eventTimeEnvShape, parseEnv, port } from '@parley/kit';

/** A comma-separated list, blanks dropped; unset: empty. */
const commaList = () =>
  z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );

export const GatewayConfigSchema = z.object({
  ...commonEnvShape,
  ...eventTimeEnvShape,
  GATEWAY_PORT: port(8080),
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(600),
  BOT_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(6000),
  /** Live streams one user or bot may hold open at once, counted across gateway instances. */
  MAX_STREAMS_PER_PRINCIPAL: z.coerce.number().int().min(1).max(10_000).default(16),
  /** Exports one user or bot may run at once. */
  MAX_EXPORTS_PER_PRINCIPAL: z.coerce.number().int().min(1).max(1000).default(2),
  /** How often an open stream checks again that its caller may still read the session. */
  STREAM_RECHECK_SECONDS: z.coerce.number().int().min(1).max(30).default(30),
  CORS_ORIGINS: commaList(),
  /** The built console (`apps/console/dist`); unset: beside the gateway in its image, else the workspace's build. */
  CONSOLE_DIR: z.string().min(1).optional(),
  /**
   * Proxies whose `X-Forwarded-For` is believed: comma-separated addresses or CIDRs (IPv4, IPv6).
   * Unset: the header is ignored and the client is the socket's peer.
   */
  TRUST_PROXY: commaList().superRefine((entries, ctx) => {
    for (const entry of entries) {
      const problem = trustProxyEntryProblem(entry);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }
  }),
});
export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): GatewayConfig => parseEnv(GatewayConfigSchema, env);
export const GATEWAY_CONFIG = Symbol('parley:gateway-config');

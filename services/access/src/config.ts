import { z } from 'zod';
import { commonEnvShape, parseEnv, port } from '@parley/kit';

const duration = z
  .string()
  .regex(/^\d+[smhd]$/, 'a number followed by s, m, h or d (e.g. 15m)')
  .transform((v) => Number(v.slice(0, -1)) * { s: 1, m: 60, h: 3600, d: 86400 }[v.slice(-1) as 's' | 'm' | 'h' | 'd']);

export const AccessConfigSchema = z
  .object({
    ...commonEnvShape,
    ACCESS_HTTP_PORT: port(8081),
    PARLEY_ADMIN_USERNAME: z.string().min(3).max(64).optional(),
    PARLEY_ADMIN_PASSWORD: z.string().min(8, 'at least 8 characters').max(256).optional(),
    JWT_PRIVATE_KEY: z.string().includes('PRIVATE KEY', { message: 'must be a PEM private key' }).optional(),
    JWT_TTL: duration.default(15 * 60),
    REFRESH_TOKEN_TTL: duration.default(30 * 86400),
    /** Failed logins for one username from one client address (IPv6: its /64) within LOGIN_FAILURE_WINDOW. */
    LOGIN_MAX_FAILURES: z.coerce.number().int().min(1).default(10),
    LOGIN_FAILURE_WINDOW: duration.default(15 * 60),
    /** Failed logins for one username from all addresses; beyond: only addresses it signed in from before. */
    LOGIN_MAX_FAILURES_PER_USER: z.coerce.number().int().min(1).default(100),
    LOGIN_USER_FAILURE_WINDOW: duration.default(60 * 60),
    /** Failed logins from one address for all usernames (LOGIN_FAILURE_WINDOW); beyond: only its known users. */
    LOGIN_MAX_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).default(100),
    /** How long an address a user signed in from stays known to the ceilings above. */
    LOGIN_KNOWN_ADDRESS_TTL: duration.default(90 * 86400),
    /** The NATS account (JWT/operator mode) bots' credentials belong to, and its signing key's seed. */
    NATS_ACCOUNT_PUBLIC_KEY: z
      .string()
      .regex(/^A[A-Z2-7]{55}$/, 'an account public nkey (A…)')
      .optional(),
    NATS_ACCOUNT_SIGNING_SEED: z
      .string()
      .regex(/^SA[A-Z2-7]{56}$/, 'an account nkey seed (SA…)')
      .optional(),
  })
  .refine((c) => !!c.NATS_ACCOUNT_PUBLIC_KEY === !!c.NATS_ACCOUNT_SIGNING_SEED, {
    message: 'set both NATS_ACCOUNT_PUBLIC_KEY and NATS_ACCOUNT_SIGNING_SEED, or neither',
    path: ['NATS_ACCOUNT_SIGNING_SEED'],
  })
  .refine((c) => !!c.PARLEY_ADMIN_USERNAME === !!c.PARLEY_ADMIN_PASSWORD, {
    message: 'set both PARLEY_ADMIN_USERNAME and PARLEY_ADMIN_PASSWORD, or neither',
    path: ['PARLEY_ADMIN_PASSWORD'],
  });
export type AccessConfig = z.infer<typeof AccessConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): AccessConfig =>
  parseEnv(AccessConfigSchema as never, env);
export const ACCESS_CONFIG = Symbol('parley:access-config');

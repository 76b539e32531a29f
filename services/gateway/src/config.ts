import { z } from 'zod';
import { commonEnvShape, eventTimeEnvShape, parseEnv, port } from '@parley/kit';

export const GatewayConfigSchema = z.object({
  ...commonEnvShape,
  ...eventTimeEnvShape,
  GATEWAY_PORT: port(8080),
  RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(600),
  BOT_RATE_LIMIT_PER_MINUTE: z.coerce.number().int().min(1).default(6000),
  CORS_ORIGINS: z
    .string()
    .default('')
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
});
export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): GatewayConfig => parseEnv(GatewayConfigSchema, env);
export const GATEWAY_CONFIG = Symbol('parley:gateway-config');

import { z } from 'zod';
import { commonEnvShape, parseEnv, port } from '@parley/kit';

export const UsageConfigSchema = z.object({ ...commonEnvShape, USAGE_HTTP_PORT: port(8084) });
export type UsageConfig = z.infer<typeof UsageConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): UsageConfig => parseEnv(UsageConfigSchema, env);

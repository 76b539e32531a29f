import { z } from 'zod';
import { commonEnvShape, parseEnv, port } from '@parley/kit';

export const SessionConfigSchema = z.object({ ...commonEnvShape, SESSION_HTTP_PORT: port(8082) });
export type SessionConfig = z.infer<typeof SessionConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): SessionConfig => parseEnv(SessionConfigSchema, env);

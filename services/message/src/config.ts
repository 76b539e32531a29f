import { z } from 'zod';
import { commonEnvShape, parseEnv, port } from '@parley/kit';

export const MessageConfigSchema = z.object({ ...commonEnvShape, MESSAGE_HTTP_PORT: port(8083) });
export type MessageConfig = z.infer<typeof MessageConfigSchema>;

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): MessageConfig => parseEnv(MessageConfigSchema, env);

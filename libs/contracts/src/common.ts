import { z } from 'zod';

export const JsonObjectSchema = z.record(z.string(), z.unknown());
export type JsonObject = z.infer<typeof JsonObjectSchema>;

/** RFC 3339 timestamp in UTC as it travels on the wire. */
export const TimestampSchema = z.iso.datetime({ offset: true });

export const IdParamSchema = z.object({ id: z.uuid({ error: 'must be a UUID' }) });

export const EmptySchema = z.object({}).strict();
export const OkSchema = z.object({ ok: z.literal(true) });

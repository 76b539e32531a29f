import { z } from 'zod';
import { jsonObject } from './input';

export const JsonObjectSchema = z.record(z.string(), z.unknown());
export type JsonObject = z.infer<typeof JsonObjectSchema>;

export const utf8Bytes = (text: string): number => Buffer.byteLength(text, 'utf8');
/** A value's size as JSON on the wire, in UTF-8 bytes. */
export const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');

/** `metadata` and `state` (a session's and a message's) hold at most this much as JSON (API.md). */
export const MAX_JSON_OBJECT_BYTES = 64 * 1024;

/**
 * A JSON object of at most MAX_JSON_OBJECT_BYTES (beyond it, 413 naming the field), nesting at
 * most 32 levels, with no NUL, unpaired surrogate or non-finite number anywhere in it.
 */
export const BoundedJsonObjectSchema = jsonObject({ maxBytes: MAX_JSON_OBJECT_BYTES });

/** RFC 3339 timestamp in UTC as it travels on the wire. */
export const TimestampSchema = z.iso.datetime({ offset: true });

export const IdParamSchema = z.object({ id: z.uuid({ error: 'must be a UUID' }) });

export const EmptySchema = z.object({}).strict();
export const OkSchema = z.object({ ok: z.literal(true) });

/**
 * The size_bytes of a message about to be stored: its JSON as lists will answer it, with the
 * fields that can still change (and seq, not known yet) at their widest, so that it never
 * undercounts what the message weighs.
 */
export function sizeOf(m: {
  id: string;
  session_id: string;
  role: string;
  content: string;
  tokens: number;
  metadata: unknown;
  media: unknown;
  client_message_id: string | null;
  created_at: Date;
}): number {
  return Buffer.byteLength(
    JSON.stringify({
      id: m.id,
      session_id: m.session_id,
      seq: 2 ** 31 - 1,
      role: m.role,
      content: m.content,
      tokens: m.tokens,
      metadata: m.metadata,
      media: m.media,
      feedback: 'dislike',
      copied: false,
      sensitive_status: 'violation',
      client_message_id: m.client_message_id,
      created_at: m.created_at.toISOString(),
    }),
    'utf8',
  );
}

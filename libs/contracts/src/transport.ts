/** Header names Parley's NATS transport reads and writes. */
export const Headers = {
  /** Marks a reply as an error payload (`ParleyError.toPayload()`), with the error's code as its value. */
  error: 'Parley-Error',
  /** On a reply too large for one message: how many chunks the whole reply has. */
  chunks: 'Parley-Chunks',
  /** On a chunked reply: the subject where the caller asks for chunk 1, 2, … by index. */
  continuation: 'Parley-Continue',
  /** JetStream's de-duplication id. */
  msgId: 'Nats-Msg-Id',
} as const;

/**
 * How deeply JSON on NATS may nest: payloads' own objects nest at most 32 levels (API.md), the
 * envelope adds a few. Deeper is refused before parsing (a 100,000-deep array takes the parser
 * most of a second).
 */
export const MAX_WIRE_JSON_DEPTH = 64;

/** Core NATS subject of a session's live fan-out (may be missed; feeds the gateway's SSE streams). */
export const LIVE_SESSION_SUBJECTS = 'live.session.*';
export const liveSessionSubject = (sessionId: string) => `live.session.${sessionId}`;

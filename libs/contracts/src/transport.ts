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

/** Core NATS subject of a session's live fan-out (may be missed; feeds the gateway's SSE streams). */
export const LIVE_SESSION_SUBJECTS = 'live.session.*';
export const liveSessionSubject = (sessionId: string) => `live.session.${sessionId}`;

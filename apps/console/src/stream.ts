import { freshToken, refresh, signedOut } from './api';

/**
 * A session's live stream read with fetch (so the token goes in the Authorization header, never
 * in a URL). Streams close when the token expires: each time it ends, it reconnects with a fresh
 * token and Last-Event-ID, so no message is missed or repeated.
 */
export interface LiveStream {
  close(): void;
}

export function openStream<T>(
  sessionId: string,
  lastSeq: () => number,
  onMessage: (message: T) => void,
  onState: (state: 'live' | 'reconnecting' | 'closed', detail?: string) => void,
): LiveStream {
  let stopped = false;
  let controller: AbortController | null = null;
  let failures = 0;

  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

  async function once(): Promise<void> {
    const token = await freshToken(10_000);
    if (!token) {
      signedOut('Your session ended; sign in again.');
      stopped = true;
      return;
    }
    controller = new AbortController();
    const res = await fetch(`/api/v1/sessions/${encodeURIComponent(sessionId)}/stream`, {
      headers: { authorization: `Bearer ${token}`, 'last-event-id': String(lastSeq()), accept: 'text/event-stream' },
      signal: controller.signal,
    });
    if (res.status === 401) {
      if (!(await refresh())) {
        signedOut('Your session ended; sign in again.');
        stopped = true;
      }
      return;
    }
    if (res.status === 404) {
      stopped = true;
      onState('closed', 'This session is gone or no longer readable.');
      return;
    }
    if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
    onState('live');
    failures = 0;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event = text;
          else if (field === 'data') data.push(text);
        }
        if (event === 'message' && data.length > 0) onMessage(JSON.parse(data.join('\n')) as T);
      }
    }
  }

  void (async () => {
    while (!stopped) {
      try {
        await once();
      } catch {
        if (stopped) break;
        failures += 1;
      }
      if (stopped) break;
      onState('reconnecting');
      await pause(Math.min(500 * 2 ** failures, 10_000));
    }
    onState('closed');
  })();

  return {
    close() {
      stopped = true;
      controller?.abort();
    },
  };
}

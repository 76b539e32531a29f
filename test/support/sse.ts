import { request as httpRequest } from 'node:http';
import { gatewayUrl } from './http';

export interface SseEvent {
  id?: string;
  event?: string;
  data?: string;
}

/**
 * A tiny server-sent-events client: collects events until closed, and knows whether the stream
 * ended. `base` is the gateway (the e2e project's unless given).
 */
export function openStream(path: string, headers: Record<string, string> = {}, base?: string) {
  const events: SseEvent[] = [];
  let status = 0;
  let ended = false;
  const url = new URL(`${base ?? gatewayUrl()}${path}`);
  const req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers } });
  const ready = new Promise<void>((resolve, reject) => {
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        if (buffer.startsWith(': connected')) resolve();
        let at: number;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          const event: SseEvent = {};
          for (const line of block.split('\n')) {
            const [key, ...rest] = line.split(': ');
            if (key === 'id' || key === 'event' || key === 'data') event[key] = rest.join(': ');
          }
          if (event.event) events.push(event);
        }
      });
      res.on('close', () => (ended = true));
      if (status !== 200) resolve();
    });
    req.on('error', (error) => {
      ended = true;
      reject(error);
    });
  });
  req.end();
  return { events, ready, status: () => status, ended: () => ended, close: () => req.destroy() };
}

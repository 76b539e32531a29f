import { randomBytes } from 'node:crypto';
import { connect as tcpConnect, type Socket } from 'node:net';

/**
 * A NATS client that speaks the text protocol itself over a plain TCP socket, so a test can
 * put on the wire exactly the bytes it wants (malformed headers, bodies of any size) and read
 * replies without a client library interpreting them first.
 */

export interface RawServerInfo {
  version: string;
  max_payload: number;
  headers?: boolean;
  jetstream?: boolean;
  [key: string]: unknown;
}

export interface RawMessage {
  subject: string;
  sid: number;
  reply?: string;
  /** The header block exactly as it came, or undefined for a MSG without headers. */
  header?: Buffer;
  data: Buffer;
}

const CRLF = Buffer.from('\r\n');

export class RawNats {
  info!: RawServerInfo;
  /** Every `-ERR` the server sent. */
  readonly errors: string[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pongs: { resolve: () => void; reject: (error: Error) => void }[] = [];
  private readonly subscriptions = new Map<number, (msg: RawMessage) => void>();
  private nextSid = 1;
  private closedError: Error | undefined;
  private readonly inboxPrefix = `_INBOX.${randomBytes(12).toString('hex')}`;
  private inboxSid: number | undefined;
  private nextToken = 1;
  private readonly waiting = new Map<string, (msg: RawMessage) => void>();
  private infoReceived: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {}

  /** Connects, reads INFO, sends CONNECT (headers and no-responders on) and waits for the first PONG. */
  static async connect(url: string, name: string): Promise<RawNats> {
    const { hostname, port } = new URL(url.replace(/^nats:/, 'http:'));
    const socket = tcpConnect(Number(port || 4222), hostname);
    const client = new RawNats(socket);
    const gotInfo = new Promise<void>((resolve, reject) => {
      client.infoReceived = resolve;
      socket.once('error', reject);
    });
    socket.on('data', (chunk: Buffer) => client.onData(chunk));
    socket.on('close', () => client.onClose(new Error('connection closed')));
    socket.on('error', (error) => client.onClose(error));
    await gotInfo;
    const connect = {
      verbose: false,
      pedantic: false,
      headers: true,
      no_responders: true,
      protocol: 1,
      lang: 'raw',
      version: '0',
      name,
    };
    socket.write(`CONNECT ${JSON.stringify(connect)}\r\n`);
    await client.flush();
    return client;
  }

  get maxPayload(): number {
    return this.info.max_payload;
  }

  get isClosed(): boolean {
    return this.closedError !== undefined;
  }

  subscribe(subject: string, onMessage: (msg: RawMessage) => void, queue?: string): number {
    const sid = this.nextSid++;
    this.subscriptions.set(sid, onMessage);
    this.socket.write(`SUB ${subject}${queue ? ` ${queue}` : ''} ${sid}\r\n`);
    return sid;
  }

  unsubscribe(sid: number): void {
    this.subscriptions.delete(sid);
    this.socket.write(`UNSUB ${sid}\r\n`);
  }

  /** PUB, or HPUB when a header block is given (written as is, whatever it holds). */
  publish(subject: string, body: Buffer | string, options: { reply?: string; header?: Buffer | string } = {}): void {
    if (this.closedError) throw this.closedError;
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    const reply = options.reply ? ` ${options.reply}` : '';
    if (options.header === undefined) {
      this.socket.write(Buffer.concat([Buffer.from(`PUB ${subject}${reply} ${data.length}\r\n`), data, CRLF]));
      return;
    }
    const header = typeof options.header === 'string' ? Buffer.from(options.header, 'latin1') : options.header;
    const line = `HPUB ${subject}${reply} ${header.length} ${header.length + data.length}\r\n`;
    this.socket.write(Buffer.concat([Buffer.from(line), header, data, CRLF]));
  }

  /** A fresh reply subject on this client's inbox; what arrives on it goes to `onReply`. */
  inbox(onReply: (msg: RawMessage) => void): string {
    if (this.inboxSid === undefined) {
      this.inboxSid = this.subscribe(`${this.inboxPrefix}.*`, (msg) => this.waiting.get(msg.subject)?.(msg));
    }
    const subject = `${this.inboxPrefix}.${this.nextToken++}`;
    this.waiting.set(subject, onReply);
    return subject;
  }

  /** Publishes with a reply subject and waits for the first answer, or undefined after `timeoutMs`. */
  async request(
    subject: string,
    body: Buffer | string,
    options: { header?: Buffer | string; timeoutMs?: number } = {},
  ): Promise<RawMessage | undefined> {
    let reply = '';
    const answer = new Promise<RawMessage | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(reply);
        resolve(undefined);
      }, options.timeoutMs ?? 2000);
      reply = this.inbox((msg) => {
        clearTimeout(timer);
        this.waiting.delete(reply);
        resolve(msg);
      });
    });
    this.publish(subject, body, { reply, header: options.header });
    return answer;
  }

  /** PING and wait for the PONG: everything written before has been processed by the server. */
  async flush(timeoutMs = 10_000): Promise<void> {
    if (this.closedError) throw this.closedError;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no PONG within ${timeoutMs} ms`)), timeoutMs);
      this.pongs.push({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.write('PING\r\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onClose(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const pong of this.pongs.splice(0)) pong.reject(error);
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const end = this.buffer.indexOf(CRLF);
      if (end < 0) return;
      const line = this.buffer.subarray(0, end).toString('latin1');
      const [op] = line.split(' ', 1);
      if (op === 'MSG' || op === 'HMSG') {
        const args = line.split(' ').slice(1);
        const withHeader = op === 'HMSG';
        const total = Number(args[args.length - 1]);
        const headerLength = withHeader ? Number(args[args.length - 2]) : 0;
        const rest = args.slice(0, withHeader ? -2 : -1);
        const start = end + 2;
        if (this.buffer.length < start + total + 2) return;
        const payload = Buffer.from(this.buffer.subarray(start, start + total));
        this.buffer = this.buffer.subarray(start + total + 2);
        const msg: RawMessage = {
          subject: rest[0],
          sid: Number(rest[1]),
          reply: rest[2],
          header: withHeader ? payload.subarray(0, headerLength) : undefined,
          data: payload.subarray(headerLength),
        };
        this.subscriptions.get(msg.sid)?.(msg);
        continue;
      }
      this.buffer = this.buffer.subarray(end + 2);
      if (op === 'PING') this.socket.write('PONG\r\n');
      else if (op === 'PONG') this.pongs.shift()?.resolve();
      else if (op === 'INFO') {
        this.info = JSON.parse(line.slice(5)) as RawServerInfo;
        this.infoReceived?.();
        this.infoReceived = undefined;
      } else if (op === '-ERR') this.errors.push(line.slice(5));
    }
  }
}

/** The status line and fields of a header block, read leniently (whatever bytes it holds). */
export function readHeader(header: Buffer | undefined): { status: string; fields: Map<string, string[]> } {
  const fields = new Map<string, string[]>();
  if (!header) return { status: '', fields };
  const [first, ...lines] = header.toString('latin1').split('\r\n');
  for (const line of lines) {
    const at = line.indexOf(':');
    if (at <= 0) continue;
    const key = line.slice(0, at).trim().toLowerCase();
    fields.set(key, [...(fields.get(key) ?? []), line.slice(at + 1).trim()]);
  }
  return { status: first.replace(/^NATS\/1\.0\s*/, '').trim(), fields };
}

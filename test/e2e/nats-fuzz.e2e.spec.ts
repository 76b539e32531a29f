import { createHash, randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { NATS_URL, ROOT, SERVICES, tail, type ServiceName } from '../support/stack';
import { adminLogin, api, eventually } from '../support/http';
import { openStream } from '../support/sse';
import { RawNats, readHeader, type RawMessage } from '../support/raw-nats';
import { findServiceProcesses, isAlive, restartService, type ServiceProcess } from '../support/processes';

/**
 * NATS is a boundary (DESIGN.md): no message can stop a service. This suite speaks the NATS
 * text protocol over a raw TCP socket and sends malformed frames (bad header blocks, bodies
 * that are not JSON or not the schema, empty, scalar, deeply nested, wide, as large as the
 * server allows) to every subject the services serve or consume, with and without a reply
 * subject. Afterwards:
 * - every subject the contracts declare was tried;
 * - every service process is alive and ready, and no frame blocked an event loop;
 * - the live stream that was open still delivers;
 * - every request with a reply subject got an answer, and an invalid one a 4xx error marked
 *   with the Parley-Error header;
 * - every poison event on a consumed stream subject reached the dead-letter subject with its
 *   reason, and one too large to carry comes truncated (`event_truncated`);
 * - a valid usage event sent afterwards is counted.
 *
 * It runs against the shared e2e stack. A service that dies is started again as it was (before
 * the checks that need it, and at the end), and the poison is deleted from the streams at the
 * end, so the suites that run after this one find a working stack.
 */

// ---------------------------------------------------------------------------------------
// The contracts, as the services load them (the built package).

interface Schema {
  safeParse(value: unknown): { success: boolean };
}
interface ContractsView {
  prefixed(prefix: string, subject: string): string;
  DLQ_USAGE: string;
  DLQ_DOMAIN: string;
  USAGE_STREAM_SUBJECTS: readonly string[];
}
const contracts = createRequire(join(ROOT, 'services', 'gateway', 'package.json'))(
  '@parley/contracts',
) as ContractsView & Record<string, unknown>;

const isSchema = (value: unknown): value is Schema => typeof (value as Schema | null)?.safeParse === 'function';

/** Every request/reply contract (`{ subject, request, response }`) and event contract (`{ subject, schema }`) exported. */
function declaredSubjects(exports: Record<string, unknown>) {
  const rpc = new Map<string, { path: string; request: Schema }>();
  const events = new Map<string, { path: string; schema: Schema }>();
  const seen = new Set<object>();
  const visit = (value: unknown, path: string): void => {
    if (!value || typeof value !== 'object' || seen.has(value) || isSchema(value)) return;
    seen.add(value);
    const v = value as Record<string, unknown>;
    if (typeof v.subject === 'string' && isSchema(v.request) && isSchema(v.response)) {
      rpc.set(v.subject, { path, request: v.request });
      return;
    }
    if (typeof v.subject === 'string' && isSchema(v.schema)) {
      events.set(v.subject, { path, schema: v.schema });
      return;
    }
    for (const [key, child] of Object.entries(v)) visit(child, `${path}.${key}`);
  };
  for (const [name, value] of Object.entries(exports)) visit(value, name);
  return { rpc, events };
}

// ---------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ERROR_HEADER = 'parley-error';
const prefix = () => {
  const p = process.env.E2E_NATS_PREFIX;
  if (!p) throw new Error('E2E_NATS_PREFIX is not set: run through the e2e project');
  return p;
};
const full = (subject: string) => contracts.prefixed(prefix(), subject);
const unprefixed = (subject: string) => {
  const head = full('');
  return subject.startsWith(head) ? subject.slice(head.length) : subject;
};
const sha1 = (data: Buffer | string) => createHash('sha1').update(data).digest('hex');

/** NATS subject matching with `*` and `>`. */
function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split('.');
  const s = subject.split('.');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return s.length > i;
    if (i >= s.length || (f[i] !== '*' && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

/** JSON.stringify without recursion, so a value nested 100k levels deep can be compared. */
function canonicalJson(value: unknown): string {
  type Work = { lit: string } | { value: unknown };
  const out: string[] = [];
  const work: Work[] = [{ value }];
  while (work.length > 0) {
    const item = work.pop() as Work;
    if ('lit' in item) {
      out.push(item.lit);
      continue;
    }
    const v = item.value;
    if (Array.isArray(v)) {
      out.push('[');
      work.push({ lit: ']' });
      for (let i = v.length - 1; i >= 0; i--) {
        const x: unknown = v[i];
        work.push({ value: x === undefined || typeof x === 'function' ? null : x });
        if (i > 0) work.push({ lit: ',' });
      }
    } else if (v !== null && typeof v === 'object') {
      out.push('{');
      work.push({ lit: '}' });
      const entries = Object.entries(v).filter(([, x]) => x !== undefined && typeof x !== 'function');
      for (let i = entries.length - 1; i >= 0; i--) {
        work.push({ value: entries[i][1] });
        work.push({ lit: `${JSON.stringify(entries[i][0])}:` });
        if (i > 0) work.push({ lit: ',' });
      }
    } else {
      out.push(JSON.stringify(v) ?? 'null');
    }
  }
  return out.join('');
}

/** What a dead letter's `event` holds for a payload: the parsed JSON, or the text when it is not JSON. */
function eventFingerprint(data: Buffer): string {
  const text = new TextDecoder().decode(data);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return sha1(`str:${text}`);
  }
  return fingerprintOf(parsed);
}
const fingerprintOf = (event: unknown) =>
  sha1(typeof event === 'string' ? `str:${event}` : `json:${canonicalJson(event === undefined ? null : event)}`);

/** Whether the request schema refuses the payload (not JSON, a schema failure, or a schema that throws on it). */
function refusedBy(schema: Schema, data: Buffer): boolean | 'empty' {
  if (data.length === 0) return 'empty';
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return true;
  }
  try {
    return !schema.safeParse(parsed).success;
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------------------
// Targets and frames

type TargetKind = 'rpc' | 'event' | 'stream' | 'live';
interface Target {
  kind: TargetKind;
  /** Without the run's prefix. */
  subject: string;
  /** The request schema of a request/reply subject. */
  request?: Schema;
  /** The service that serves it (request/reply: the subject's first word). */
  service?: ServiceName;
}

/**
 * Frames come in phases, so that one run reports as much as it can even where a frame stops a
 * service or a consumer: `body` (small bodies, no header), `header` (header blocks whose keys
 * are well formed), then `flood` (one header block of many lines to a few subjects, while
 * /healthz latency is measured), then `header-key` (keys with characters a header name may not
 * hold) and `large` (bodies deeply nested, wide or at max_payload). Request/reply lanes send
 * `header-key` before `large`, the other lanes (streams, events, live) `large` before
 * `header-key`: a service that dies on one is not there for the other, and a consumer that
 * stalls on one delays the other by its ack wait.
 */
type Phase = 'body' | 'header' | 'flood' | 'header-key' | 'large';
interface FrameKind {
  name: string;
  phase: Phase;
  header?: Buffer;
  body(target: Target): Buffer;
  /** Only for some targets (events that are valid but for one field are built per stream subject). */
  only?(target: Target): boolean;
}

interface Sent {
  target: Target;
  kind: string;
  phase: Phase;
  reply: boolean;
  at: number;
  header?: Buffer;
  body: Buffer;
  answer?: RawMessage;
  outcome?: 'answer' | 'no-responders' | 'timeout' | 'puback' | 'puback-error';
}

const latin1 = (s: string) => Buffer.from(s, 'latin1');
const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const iso = (ms: number) => new Date(ms).toISOString();

function frameKinds(maxPayload: number, botId: string): FrameKind[] {
  const fixed = (name: string, phase: Phase, body: Buffer, header?: Buffer): FrameKind => ({
    name,
    phase,
    header,
    body: () => body,
  });
  const tagged = (name: string, phase: Phase, header: Buffer): FrameKind =>
    fixed(name, phase, json({ fuzz: name }), header);
  const nest = (open: string, inner: string, close: string, depth: number) =>
    `${open.repeat(depth)}${inner}${close.repeat(depth)}`;
  const wide: string[] = [];
  for (let size = 2, i = 0; size < 300 * 1024; i++) {
    const entry = `"k${i}":0`;
    wide.push(entry);
    size += entry.length + 1;
  }
  const maxHead = '{"fuzz":"max-payload","pad":"';
  const maxBody = Buffer.from(`${maxHead}${'x'.repeat(maxPayload - maxHead.length - 2)}"}`);
  const now = Date.now();
  const usageEvent = (extra: Record<string, unknown>) => ({
    request_id: `fuzz-${randomUUID()}`,
    bot_id: botId,
    status: 'completed',
    provider: 'fuzz',
    model: 'fuzz-model',
    channel: 'fuzz',
    input_tokens: 1,
    output_tokens: 1,
    started_at: iso(now - 60_000),
    completed_at: iso(now - 59_000),
    ...extra,
  });
  const activityEvent = (extra: Record<string, unknown>) => ({
    event_id: `fuzz-${randomUUID()}`,
    bot_id: botId,
    event_type: 'fuzz',
    occurred_at: iso(now - 60_000),
    ...extra,
  });
  const onUsage = (t: Target) => t.kind === 'stream' && t.subject.startsWith('usage.');
  const onActivity = (t: Target) => t.kind === 'stream' && t.subject.startsWith('activity.');
  const perStream = (name: string, usage: Buffer | undefined, activity: Buffer | undefined): FrameKind => ({
    name,
    phase: 'body',
    only: (t) => (onUsage(t) && usage !== undefined) || (onActivity(t) && activity !== undefined),
    body: (t) => (onUsage(t) ? usage : activity) ?? Buffer.alloc(0),
  });
  // Built as text: the test's own JSON.stringify cannot go 50k levels deep either.
  const activityText = JSON.stringify(activityEvent({}));
  const deepMetadata = `${activityText.slice(0, -1)},"metadata":${nest('{"a":', '0', '}', 50_000)}}`;
  return [
    // Bodies.
    fixed('not-json', 'body', Buffer.from('this is not JSON {')),
    fixed('invalid-utf8', 'body', Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x7b])),
    fixed('truncated-json', 'body', Buffer.from('{"bot_id": "')),
    fixed('empty', 'body', Buffer.alloc(0)),
    fixed('null', 'body', Buffer.from('null')),
    fixed('true', 'body', Buffer.from('true')),
    fixed('number', 'body', Buffer.from('42')),
    fixed('huge-number', 'body', Buffer.from('1e999')),
    fixed('string', 'body', Buffer.from('"a JSON string"')),
    fixed('array', 'body', Buffer.from('[1,"two",{"three":3}]')),
    fixed('empty-array', 'body', Buffer.from('[]')),
    fixed('empty-object', 'body', Buffer.from('{}')),
    fixed(
      'wrong-schema',
      'body',
      json({ fuzz: 'wrong-schema', id: 'not-a-uuid', bot_id: 42, actor: { type: 'robot' }, limit: -1 }),
    ),
    fixed('nul-in-strings', 'body', json({ fuzz: 'nul\u0000', request_id: 'r\u0000', bot_id: '\u0000' })),
    perStream(
      'valid-but-nul',
      json(usageEvent({ model: 'fuzz\u0000model' })),
      json(activityEvent({ detail: 'nul\u0000' })),
    ),
    perStream(
      'valid-but-lone-surrogate',
      json(usageEvent({ model: 'fuzz\ud800model' })),
      json(activityEvent({ channel: 'web\ud800' })),
    ),
    { ...perStream('valid-but-deep-metadata', undefined, Buffer.from(deepMetadata)), phase: 'large' },
    fixed('deep-array', 'large', Buffer.from(nest('[', '', ']', 100_000))),
    fixed('deep-object', 'large', Buffer.from(`{"fuzz":"deep-object","metadata":${nest('{"a":', '0', '}', 50_000)}}`)),
    fixed('wide-object', 'large', Buffer.from(`{${wide.join(',')}}`)),
    fixed('max-payload', 'large', maxBody),
    // Header blocks whose keys are well formed (or absent).
    tagged('hdr-missing-colon', 'header', latin1('NATS/1.0\r\nX-Fuzz no colon here\r\n\r\n')),
    tagged('hdr-no-version-line', 'header', latin1('X-Fuzz: 1\r\n\r\n')),
    tagged('hdr-unterminated', 'header', latin1('NATS/1.0\r\nX-Fuzz: 1')),
    tagged('hdr-binary', 'header', latin1('\x00\x01\x02\x03\r\n\r\n')),
    tagged('hdr-empty-key', 'header', latin1('NATS/1.0\r\n: no key\r\n\r\n')),
    tagged('hdr-non-ascii-value', 'header', latin1('NATS/1.0\r\nX-Fuzz: \xff\xfe\xc3\xa9\r\n\r\n')),
    tagged('hdr-bad-traceparent', 'header', latin1('NATS/1.0\r\ntraceparent: 00-zz-zz-zz\r\ntracestate: ==\r\n\r\n')),
    fixed('hdr-status-503-empty-body', 'header', Buffer.alloc(0), latin1('NATS/1.0 503\r\n\r\n')),
    tagged(
      'hdr-huge-value',
      'header',
      latin1(`NATS/1.0\r\nX-Fuzz-Huge: ${'a'.repeat(Math.floor(maxPayload / 2))}\r\n\r\n`),
    ),
    // One header block of many short lines (39 KB: JetStream stores headers up to 64 KiB).
    tagged(
      'hdr-many-lines',
      'flood',
      latin1(`NATS/1.0\r\n${Array.from({ length: 4000 }, (_, i) => `K${i}: v`).join('\r\n')}\r\n\r\n`),
    ),
    // Keys with characters a header name may not hold.
    tagged('hdr-space-in-key', 'header-key', latin1('NATS/1.0\r\nbad key: 1\r\n\r\n')),
    tagged('hdr-non-ascii-key', 'header-key', latin1('NATS/1.0\r\nX-Fuzz-\xc3\xa9\xff: 1\r\n\r\n')),
    tagged('hdr-control-char-in-key', 'header-key', latin1('NATS/1.0\r\nX-F\x01uzz: 1\r\n\r\n')),
  ];
}

// ---------------------------------------------------------------------------------------

interface Death {
  name: ServiceName;
  pid: number;
  at: number;
  afterRestart: boolean;
  /** When this process was found or started (frames before belong to an earlier one). */
  startedAt?: number;
  /** What the process wrote to stderr: the error that ended it. */
  log: string;
}

interface StoredPoison {
  stream: string;
  seq: number;
  subject: string;
  data: Buffer;
  sent: Sent[];
}

interface DeadLetter {
  reason?: unknown;
  code?: unknown;
  subject?: unknown;
  event?: unknown;
  received_at?: unknown;
  event_truncated?: unknown;
  event_text?: unknown;
  stream_seq?: unknown;
}

describe('NATS is a boundary: malformed frames on every subject (e2e)', () => {
  const runId = process.env.E2E_RUN_ID ?? '';
  const ports = Object.fromEntries(
    SERVICES.map((name) => [name, Number(process.env[`E2E_${name.toUpperCase()}_PORT`])]),
  ) as Record<ServiceName, number>;
  const declared = declaredSubjects(contracts);
  const sent: Sent[] = [];
  const deaths: Death[] = [];
  const latency = new Map<ServiceName, number>();
  let procs = new Map<ServiceName, ServiceProcess>();
  let snapshot = new Map<ServiceName, { alive: boolean; readyz: string }>();
  let control: RawNats;
  let maxPayload = 0;
  let kinds: FrameKind[] = [];
  let targets: Target[] = [];
  let adminToken = '';
  let bot: { id: string; api_key: string };
  let sessionId = '';
  let stream: ReturnType<typeof openStream> | undefined;
  let liveAfter: { delivered: boolean; stillOpen: boolean; detail: string } | undefined;
  let watch: NodeJS.Timeout | undefined;
  const streamStart = new Map<string, number>();
  const startedAt = new Map<number, number>();
  const logOffsets = new Map<number, number>();
  const logSize = (file: string) => {
    try {
      return statSync(file).size;
    } catch {
      return 0;
    }
  };
  const track = (p: ServiceProcess) => {
    startedAt.set(p.pid, Date.now());
    logOffsets.set(p.pid, logSize(p.log));
  };
  const streams = { usage: '', domain: '', dlq: '' };
  const restartedBeforeChecks: ServiceName[] = [];

  /** A JetStream API call over the raw connection (plain JSON both ways, no client library). */
  async function jsApi<T = any>(subject: string, body: unknown = {}): Promise<T> {
    const answer = await control.request(subject, JSON.stringify(body), { timeoutMs: 10_000 });
    if (!answer) throw new Error(`no answer on ${subject}`);
    return JSON.parse(answer.data.toString('utf8')) as T;
  }

  async function streamOf(subject: string): Promise<string> {
    const res = await jsApi<{ streams?: string[] }>('$JS.API.STREAM.NAMES', { subject: full(subject) });
    const name = res.streams?.[0];
    if (!name) throw new Error(`no stream holds ${full(subject)}`);
    return name;
  }

  async function lastSeq(name: string): Promise<number> {
    return (await jsApi<{ state: { last_seq: number } }>(`$JS.API.STREAM.INFO.${name}`)).state.last_seq;
  }

  const sourceCache = new Map<string, Awaited<ReturnType<typeof readStream>>>();
  /** What this suite's run put in a source stream (read once). */
  async function sourceMessages(name: string) {
    const cached = sourceCache.get(name);
    if (cached) return cached;
    const read = await readStream(name, streamStart.get(name) ?? 1);
    sourceCache.set(name, read);
    return read;
  }

  /** Messages of a stream from `from` on: subject, header block and body as stored. */
  async function readStream(name: string, from: number) {
    const out: { seq: number; subject: string; header: Buffer; data: Buffer }[] = [];
    const last = await lastSeq(name);
    let next = from;
    const worker = async () => {
      while (next <= last) {
        const seq = next++;
        const res = await jsApi<{ message?: { subject: string; hdrs?: string; data?: string } }>(
          `$JS.API.STREAM.MSG.GET.${name}`,
          { seq },
        );
        if (!res.message) continue;
        out.push({
          seq,
          subject: res.message.subject,
          header: Buffer.from(res.message.hdrs ?? '', 'base64'),
          data: Buffer.from(res.message.data ?? '', 'base64'),
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return out.sort((a, b) => a.seq - b.seq);
  }

  const serviceOf = (target: Target): ServiceName | undefined =>
    target.kind === 'rpc'
      ? target.service
      : target.kind === 'stream'
        ? 'usage'
        : target.kind === 'live'
          ? 'gateway'
          : undefined;

  /**
   * Sends one frame kind to every target of a lane: first without a reply subject, then with one,
   * and waits for the answers. False when nothing answered.
   */
  async function sendKind(raw: RawNats, lane: Target[], kind: FrameKind, timeoutMs: number): Promise<boolean> {
    const mine = lane.filter((t) => !kind.only || kind.only(t));
    const frame = (target: Target, reply: boolean): Sent => {
      const f: Sent = {
        target,
        kind: kind.name,
        phase: kind.phase,
        header: kind.header,
        body: kind.body(target),
        reply,
        at: Date.now(),
      };
      sent.push(f);
      return f;
    };
    for (const target of mine) raw.publish(full(target.subject), kind.body(target), { header: kind.header });
    for (const target of mine) frame(target, false);
    const answers = mine.map(async (target) => {
      const f = frame(target, true);
      if (target.kind === 'live') {
        // Nobody answers on a live subject; a 503 status means nobody listens any more.
        const reply = raw.inbox((msg) => {
          f.answer = msg;
          f.outcome = readHeader(msg.header).status.startsWith('503') ? 'no-responders' : 'answer';
        });
        raw.publish(full(target.subject), f.body, { header: kind.header, reply });
        return true;
      }
      const answer = await raw.request(full(target.subject), f.body, { header: kind.header, timeoutMs });
      f.answer = answer;
      if (!answer) {
        f.outcome = 'timeout';
        return false;
      }
      if (readHeader(answer.header).status.startsWith('503') && answer.data.length === 0) f.outcome = 'no-responders';
      else if (target.kind === 'rpc') f.outcome = 'answer';
      else {
        const ack = JSON.parse(answer.data.toString('utf8')) as { seq?: number; error?: unknown };
        f.outcome = ack.error || !ack.seq ? 'puback-error' : 'puback';
      }
      return true;
    });
    const answered = await Promise.all(answers);
    await raw.flush();
    return answered.some(Boolean) || mine.length === 0;
  }

  /** Runs kinds against a lane of targets, one kind at a time. */
  async function runLane(raw: RawNats, lane: Target[], phaseKinds: FrameKind[]): Promise<void> {
    let misses = 0;
    for (const kind of phaseKinds) {
      // A lane whose service stopped answering keeps sending everything, without waiting long.
      // Large frames (300 KB of keys, 1 MiB bodies) cost a parse each, queued behind one another
      // on a loaded 2-core machine: they get longer to be answered, but must still be answered.
      const patience = kind.phase === 'large' ? 10_000 : 3000;
      const answered = await sendKind(raw, lane, kind, misses >= 2 ? 300 : patience);
      misses = answered ? 0 : misses + 1;
    }
  }

  /** Waits for every lane, even when one fails, so none keeps sending after the suite moved on. */
  async function allLanes(runs: Promise<void>[]): Promise<void> {
    const failed = (await Promise.allSettled(runs)).find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async function readyz(name: ServiceName): Promise<string> {
    try {
      const res = await fetch(`http://127.0.0.1:${ports[name]}/readyz`, { signal: AbortSignal.timeout(5000) });
      return String(res.status);
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  }

  /** The longest /healthz round trip of each service over `ms`. */
  async function measureLatency(ms: number): Promise<void> {
    const until = Date.now() + ms;
    await Promise.all(
      SERVICES.map(async (name) => {
        while (Date.now() < until) {
          const started = Date.now();
          try {
            await fetch(`http://127.0.0.1:${ports[name]}/healthz`, { signal: AbortSignal.timeout(15_000) });
          } catch {
            // a dead service is reported elsewhere
          }
          latency.set(name, Math.max(latency.get(name) ?? 0, Date.now() - started));
          await sleep(100);
        }
      }),
    );
  }

  /** Waits until every live service answers /healthz quickly again (after a flood), at most `ms`. */
  async function waitResponsive(ms: number): Promise<void> {
    const until = Date.now() + ms;
    for (const name of SERVICES) {
      while (Date.now() < until && isAlive(procs.get(name)?.pid ?? 0)) {
        const started = Date.now();
        const ok = await fetch(`http://127.0.0.1:${ports[name]}/healthz`, { signal: AbortSignal.timeout(2000) })
          .then(() => true)
          .catch(() => false);
        if (ok && Date.now() - started < 200) break;
      }
    }
  }

  const frameName = (f: Sent) => `${f.kind} on ${f.target.subject}${f.reply ? ' (with reply)' : ''}`;

  /**
   * The frame that stopped a service: the one sent before the first request to it that nobody
   * answered any more (the server answers "no responders" once the process is gone).
   */
  function describeDeath(death: Death): string {
    const mine = sent.filter((f) => serviceOf(f.target) === death.name && f.at >= (death.startedAt ?? 0));
    const first = mine.findIndex((f) => f.reply && (f.outcome === 'no-responders' || f.outcome === 'timeout'));
    const suspects = first < 0 ? mine.slice(-2) : mine.slice(Math.max(0, first - 1), first + 1);
    return [
      `${death.name} (pid ${death.pid}) exited${death.afterRestart ? ' after it was started again' : ''}`,
      `    frames up to the first one unanswered: ${suspects.map(frameName).join('; ') || '(none)'}`,
      `    it wrote: ${death.log || '(nothing on stderr)'}`,
    ].join('\n');
  }

  /** The error lines a process wrote (without stack frames, which the test report would re-render). */
  function errorExcerpt(log: string, from: number): string {
    let text: string;
    try {
      text = readFileSync(log).subarray(from).toString('utf8');
    } catch {
      return '';
    }
    const lines = text.split('\n').filter((l) => !l.startsWith('{') && l.trim() !== '');
    const at = lines.findIndex((l) => /^\w*(Error|Exception)\b/.test(l.trim()));
    if (at < 0) return lines.slice(-3).join(' | ');
    const frames = lines
      .slice(at + 1)
      .filter((l) => /^\s+at /.test(l))
      .slice(0, 3)
      .map((l) => l.trim().replace(/^at /, 'in '));
    return [lines[at].trim(), ...frames].join(' | ');
  }

  function watchProcesses(afterRestart: () => boolean): NodeJS.Timeout {
    const timer = setInterval(() => {
      for (const [name, proc] of procs) {
        if (!isAlive(proc.pid) && !deaths.some((d) => d.pid === proc.pid)) {
          deaths.push({
            name,
            pid: proc.pid,
            at: Date.now(),
            afterRestart: afterRestart(),
            startedAt: startedAt.get(proc.pid),
            log: errorExcerpt(proc.log, logOffsets.get(proc.pid) ?? 0),
          });
        }
      }
    }, 100);
    timer.unref();
    return timer;
  }

  beforeAll(async () => {
    if (!runId) throw new Error('E2E_RUN_ID is not set: run through the e2e project');
    procs = findServiceProcesses(runId, ports);
    for (const p of procs.values()) track(p);
    expect([...procs.keys()].sort()).toEqual([...SERVICES].sort());
    let restartedYet = false;
    watch = watchProcesses(() => restartedYet);

    adminToken = await adminLogin();
    const created = await api('POST', '/api/v1/bots', { token: adminToken, body: { name: `fuzz-${Date.now()}` } });
    expect(created.status).toBe(201);
    bot = created.body;
    const session = await api('POST', '/api/v1/sessions', { token: adminToken, body: { title: 'fuzz' } });
    expect(session.status).toBe(201);
    sessionId = session.body.id;
    const sse = openStream(`/api/v1/sessions/${sessionId}/stream?access_token=${adminToken}`);
    stream = sse;
    await sse.ready;
    expect(sse.status()).toBe(200);

    control = await RawNats.connect(NATS_URL, 'parley-fuzz-control');
    maxPayload = control.maxPayload;
    streams.usage = await streamOf(contracts.USAGE_STREAM_SUBJECTS[0].replace('*', bot.id));
    streams.domain = await streamOf([...declared.events.keys()][0]);
    streams.dlq = await streamOf(contracts.DLQ_USAGE);
    for (const name of new Set(Object.values(streams))) streamStart.set(name, (await lastSeq(name)) + 1);

    // The gateway subscribes to the live subject when the stream opens; wait until the server
    // routes to it. The probe is a message the stream ignores (seq 0 is never newer than what it sent).
    const live = `live.session.${sessionId}`;
    await eventually(async () => {
      let nobody = false;
      const reply = control.inbox((msg) => (nobody = readHeader(msg.header).status.startsWith('503')));
      control.publish(full(live), '{"seq":0}', { reply });
      await control.flush();
      await sleep(50);
      return nobody ? undefined : true;
    }, 5000);

    targets = [
      ...[...declared.rpc.entries()].map(([subject, c]): Target => {
        const service = subject.split('.')[0] as ServiceName;
        return { kind: 'rpc', subject, request: c.request, service };
      }),
      ...contracts.USAGE_STREAM_SUBJECTS.map((pattern): Target => ({
        kind: 'stream',
        subject: pattern.replace('*', bot.id),
      })),
      ...[...declared.events.keys()].map((subject): Target => ({ kind: 'event', subject })),
      { kind: 'live', subject: live },
    ];
    kinds = frameKinds(maxPayload, bot.id);

    // Lanes run side by side, each on its own connection: the request/reply subjects of one
    // service, the stream subjects, the event subjects, the live subject.
    const lanes: Target[][] = [];
    for (const service of SERVICES) {
      const mine = targets.filter((t) => t.kind === 'rpc' && t.service === service);
      if (mine.length > 0) lanes.push(mine);
    }
    lanes.push(targets.filter((t) => t.kind === 'stream'));
    lanes.push(targets.filter((t) => t.kind === 'event'));
    lanes.push(targets.filter((t) => t.kind === 'live'));
    const conns = await Promise.all(lanes.map((_, i) => RawNats.connect(NATS_URL, `parley-fuzz-${i}`)));
    const phase = (p: Phase) => kinds.filter((k) => k.phase === p);
    try {
      await allLanes(lanes.map((lane, i) => runLane(conns[i], lane, [...phase('body'), ...phase('header')])));

      // The flood: one frame to one request/reply subject of each service and one subject of each
      // stream family, then how long each service takes to answer /healthz.
      const firsts = new Map<string, Target>();
      for (const t of targets) {
        const family =
          t.kind === 'rpc' ? `rpc:${t.service}` : `${t.kind}:${t.subject.split('.').slice(0, 2).join('.')}`;
        if (!firsts.has(family) && t.kind !== 'live') firsts.set(family, t);
      }
      for (const flood of phase('flood')) {
        for (const t of firsts.values()) {
          const body = flood.body(t);
          sent.push({
            target: t,
            kind: flood.name,
            phase: 'flood',
            reply: false,
            at: Date.now(),
            header: flood.header,
            body,
          });
          control.publish(full(t.subject), flood.body(t), { header: flood.header });
        }
      }
      await control.flush();
      await measureLatency(2000);
      await waitResponsive(20_000);

      await allLanes(
        lanes.map((lane, i) => {
          const order: Phase[] = lane[0].kind === 'rpc' ? ['header-key', 'large'] : ['large', 'header-key'];
          return runLane(conns[i], lane, order.flatMap(phase));
        }),
      );
    } finally {
      for (const c of conns) c.close();
    }

    // Consumers take a moment to reach the last frames; a crash on that path shows here.
    await sleep(2000);
    snapshot = new Map(
      await Promise.all(
        SERVICES.map(
          async (name) => [name, { alive: isAlive(procs.get(name)?.pid ?? 0), readyz: await readyz(name) }] as const,
        ),
      ),
    );

    // Does the live stream still deliver? Append a message and watch for it.
    const marker = `after the fuzz ${randomUUID()}`;
    const appended = await api('POST', `/api/v1/sessions/${sessionId}/messages`, {
      token: adminToken,
      body: { role: 'user', content: marker },
    }).catch((error: unknown) => ({ status: 0, body: String(error) }));
    const delivered = await eventually(async () => {
      if (sse.events.some((e) => e.data?.includes(marker))) return true;
      return sse.ended() ? false : undefined;
    }, 5000).catch(() => false);
    liveAfter = {
      delivered,
      stillOpen: !sse.ended(),
      detail: `append answered ${appended.status}; stream ${sse.ended() ? 'ended' : 'open'}; ${sse.events.length} events on it`,
    };

    // Later checks need every service: start the dead ones again as they were.
    restartedYet = true;
    for (const [name, proc] of procs) {
      if (!isAlive(proc.pid)) restartedBeforeChecks.push(name);
    }
    const again = await Promise.all(
      restartedBeforeChecks.map((name) => {
        const old = procs.get(name) as ServiceProcess;
        const offset = logSize(old.log);
        return restartService(old).then((p) => {
          startedAt.set(p.pid, Date.now());
          logOffsets.set(p.pid, offset);
          return p;
        });
      }),
    );
    for (const p of again) procs.set(p.name, p);
  }, 150_000);

  afterAll(async () => {
    stream?.close();
    clearInterval(watch);
    try {
      // Take the poison out of the streams, so no consumer meets it again after this suite.
      if (control && !control.isClosed) {
        const mine = new Set(
          sent
            .filter((s) => s.target.kind === 'stream' || s.target.kind === 'event')
            .map((s) => `${full(s.target.subject)}|${sha1(s.body)}`),
        );
        for (const name of [streams.usage, streams.domain]) {
          if (!name) continue;
          for (const m of await sourceMessages(name)) {
            if (mine.has(`${m.subject}|${sha1(m.data)}`)) {
              await jsApi(`$JS.API.STREAM.MSG.DELETE.${name}`, { seq: m.seq, no_erase: true });
            }
          }
        }
      }
    } finally {
      control?.close();
      // Suites after this one need every service.
      for (const [name, proc] of procs) {
        if (!isAlive(proc.pid)) procs.set(name, await restartService(proc));
      }
    }
  }, 120_000);

  it('tries every subject the contracts declare, with every frame, with and without a reply subject', () => {
    expect(declared.rpc.size).toBeGreaterThan(20);
    expect(declared.events.size).toBeGreaterThan(0);
    const tried = new Map<string, Set<string>>();
    for (const s of sent) {
      if (s.phase === 'flood') continue;
      const key = s.target.subject;
      if (!tried.has(key)) tried.set(key, new Set());
      tried.get(key)?.add(`${s.kind}/${s.reply ? 'reply' : 'no-reply'}`);
    }
    const missing: string[] = [];
    const expected = [
      ...[...declared.rpc.keys()].map((subject) => ({ subject, kind: 'rpc' as const })),
      ...[...declared.events.keys()].map((subject) => ({ subject, kind: 'event' as const })),
    ];
    for (const { subject, kind } of expected) {
      const seen = tried.get(subject);
      if (!seen) {
        missing.push(`${subject}: never tried`);
        continue;
      }
      const target = targets.find((t) => t.subject === subject && t.kind === kind);
      for (const k of kinds) {
        if (k.phase === 'flood' || (k.only && target && !k.only(target))) continue;
        for (const variant of ['reply', 'no-reply']) {
          if (!seen.has(`${k.name}/${variant}`)) missing.push(`${subject}: ${k.name} ${variant}`);
        }
      }
    }
    for (const pattern of [...contracts.USAGE_STREAM_SUBJECTS, 'live.session.*']) {
      if (![...tried.keys()].some((subject) => subjectMatches(pattern, subject))) {
        missing.push(`${pattern}: no subject of it tried`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('no frame stops a process: every service is alive and ready afterwards', () => {
    const problems: string[] = [];
    for (const name of SERVICES) {
      const state = snapshot.get(name);
      if (!state?.alive || state.readyz !== '200') {
        problems.push(`${name}: ${state?.alive ? 'alive' : 'dead'}, /readyz ${state?.readyz}`);
      }
    }
    const report = [...problems, ...deaths.map(describeDeath)].join('\n');
    expect(report).toBe('');
  });

  it('no frame blocks an event loop: /healthz answers within 500 ms while a header flood arrives', () => {
    const slow = [...latency.entries()].filter(([, ms]) => ms > 500).map(([name, ms]) => `${name}: ${ms} ms`);
    expect(slow).toEqual([]);
  });

  it('an open live stream survives and delivers the next message', () => {
    expect(liveAfter).toEqual({ delivered: true, stillOpen: true, detail: expect.any(String) });
  });

  it('every request with a reply subject is answered, and an invalid one with a 4xx Parley-Error', () => {
    const problems = new Map<string, string[]>();
    const note = (what: string, subject: string) => {
      if (!problems.has(what)) problems.set(what, []);
      problems.get(what)?.push(subject);
    };
    const verdicts = new Map<string, boolean | 'empty'>();
    for (const s of sent) {
      if (s.target.kind !== 'rpc' || !s.reply || !s.target.request) continue;
      if (s.outcome !== 'answer' || !s.answer) {
        note(`${s.kind}: ${s.outcome ?? 'nothing'}`, s.target.subject);
        continue;
      }
      const key = `${s.target.subject}|${s.kind}`;
      const refused = verdicts.get(key) ?? refusedBy(s.target.request, s.body);
      verdicts.set(key, refused);
      const code = readHeader(s.answer.header).fields.get(ERROR_HEADER)?.[0];
      if (refused === true && !code) note(`${s.kind}: answered without ${ERROR_HEADER}`, s.target.subject);
      if (code) {
        let status = 0;
        try {
          status = (JSON.parse(s.answer.data.toString('utf8')) as { status?: number }).status ?? 0;
        } catch {
          // status stays 0: not a problem payload
        }
        if (status < 400 || status >= 500) note(`${s.kind}: ${code} with status ${status}`, s.target.subject);
      }
    }
    const report = [...problems.entries()].map(
      ([what, subjects]) => `${what} (${subjects.length}): ${[...new Set(subjects)].join(', ')}`,
    );
    expect(report).toEqual([]);
  });

  it('every poison event on a consumed stream subject is dead-lettered with its reason; too large ones truncated', async () => {
    // What the streams stored of what this suite sent (matched by subject, header block and body;
    // by subject and body if the stream changed the header block).
    const poison: StoredPoison[] = [];
    const exact = new Map<string, Sent[]>();
    const loose = new Map<string, Sent[]>();
    const sentCount = new Map<string, number>();
    const refusedByServer = new Map<string, string>();
    for (const s of sent) {
      if (s.target.kind !== 'stream' && s.target.kind !== 'event') continue;
      const bodyKey = `${full(s.target.subject)}|${sha1(s.body)}`;
      const key = `${bodyKey}|${sha1(s.header ?? Buffer.alloc(0))}`;
      exact.set(key, [...(exact.get(key) ?? []), s]);
      loose.set(bodyKey, [...(loose.get(bodyKey) ?? []), s]);
      sentCount.set(bodyKey, (sentCount.get(bodyKey) ?? 0) + 1);
      if (s.outcome === 'puback-error') refusedByServer.set(bodyKey, s.answer?.data.toString('utf8') ?? '');
    }
    const storedCount = new Map<string, number>();
    for (const name of [streams.usage, streams.domain]) {
      for (const m of await sourceMessages(name)) {
        const bodyKey = `${m.subject}|${sha1(m.data)}`;
        const match = exact.get(`${bodyKey}|${sha1(m.header)}`) ?? loose.get(bodyKey);
        if (!match) continue;
        poison.push({ stream: name, seq: m.seq, subject: m.subject, data: m.data, sent: match });
        storedCount.set(bodyKey, (storedCount.get(bodyKey) ?? 0) + 1);
      }
    }
    // The server may refuse a frame for the stream (a PubAck error): nothing for a consumer to do.
    const refusals = [...refusedByServer.entries()].map(([key, why]) => {
      const s = loose.get(key)?.[0];
      return `${s?.kind} on ${s?.target.subject}: ${why}`;
    });
    if (refusals.length > 0) console.info(`JetStream refused to store:\n${refusals.join('\n')}`);
    const notStored = [...sentCount.entries()]
      .filter(([key, n]) => !refusedByServer.has(key) && (storedCount.get(key) ?? 0) < n)
      .map(([key, n]) => {
        const s = loose.get(key)?.[0];
        return `${s?.kind} on ${s?.target.subject}: ${storedCount.get(key) ?? 0} of ${n}`;
      });

    // Every consumer whose filter takes a poison message owes one dead letter for it.
    const consumers = new Map<string, { durable: string; filter: string }[]>();
    for (const name of [streams.usage, streams.domain]) {
      const res = await jsApi<{ consumers?: { name: string; config: { filter_subject?: string } }[] }>(
        `$JS.API.CONSUMER.LIST.${name}`,
      );
      consumers.set(
        name,
        (res.consumers ?? []).map((c) => ({ durable: c.name, filter: c.config.filter_subject ?? '>' })),
      );
    }
    const owed = poison.flatMap((p) =>
      (consumers.get(p.stream) ?? [])
        .filter((c) => subjectMatches(c.filter, p.subject))
        .map((c) => ({ poison: p, consumer: c.durable })),
    );
    expect(owed.length).toBeGreaterThan(0);

    const dlqSubjects = new Map([
      [full(contracts.DLQ_USAGE), streams.usage],
      [full(contracts.DLQ_DOMAIN), streams.domain],
    ]);
    const letters: { stream: string; letter: DeadLetter; print: string }[] = [];
    const prints = new Map<StoredPoison, string>();
    const printOf = (p: StoredPoison) => prints.get(p) ?? prints.set(p, eventFingerprint(p.data)).get(p) ?? '';
    let next = streamStart.get(streams.dlq) ?? 1;
    const collect = async () => {
      for (const m of await readStream(streams.dlq, next)) {
        next = m.seq + 1;
        const source = dlqSubjects.get(m.subject);
        if (!source) continue;
        let letter: DeadLetter = {};
        try {
          letter = JSON.parse(m.data.toString('utf8')) as DeadLetter;
        } catch {
          // stays empty: matches nothing
        }
        letters.push({ stream: source, letter, print: fingerprintOf(letter.event) });
      }
    };
    const tooLarge = (p: StoredPoison) => p.data.length > maxPayload - 64 * 1024;
    const match = () => {
      const pool = letters.map((l) => ({ ...l, used: false }));
      const missing: typeof owed = [];
      const bad: string[] = [];
      for (const o of owed) {
        const subject = unprefixed(o.poison.subject);
        const print = printOf(o.poison);
        const found = pool.find(
          (l) =>
            !l.used &&
            l.stream === o.poison.stream &&
            l.letter.subject === subject &&
            (l.letter.event_truncated === true ? l.letter.stream_seq === o.poison.seq : l.print === print),
        );
        if (!found) {
          missing.push(o);
          continue;
        }
        found.used = true;
        const what = `${o.poison.sent[0].kind} on ${subject}`;
        const l = found.letter;
        if (typeof l.reason !== 'string' || !l.reason) bad.push(`${what}: no reason`);
        if (typeof l.code !== 'string' || !l.code) bad.push(`${what}: no code`);
        if (typeof l.received_at !== 'string' || Number.isNaN(Date.parse(l.received_at))) {
          bad.push(`${what}: no received_at`);
        }
        if (tooLarge(o.poison) && l.event_truncated !== true) bad.push(`${what}: too large but not truncated`);
        if (l.event_truncated === true) {
          const text = o.poison.data.toString('latin1').slice(0, 64 * 1024);
          if (l.event_text !== text) bad.push(`${what}: event_text is not the first 64 KiB`);
          if ('event' in l) bad.push(`${what}: truncated but still carries event`);
        }
      }
      return { missing, bad };
    };
    // Wait until everything owed arrived, or nothing new arrived for 3 s (at most 10 s).
    let verdict = match();
    const deadline = Date.now() + 10_000;
    let lastArrival = Date.now();
    while (verdict.missing.length > 0 && Date.now() < deadline && Date.now() - lastArrival < 3000) {
      await sleep(500);
      const before = letters.length;
      await collect();
      if (letters.length > before) lastArrival = Date.now();
      verdict = match();
    }

    const grouped = new Map<string, Set<string>>();
    for (const m of verdict.missing) {
      const key = `${m.poison.sent[0].kind} (${m.consumer})`;
      if (!grouped.has(key)) grouped.set(key, new Set());
      grouped.get(key)?.add(unprefixed(m.poison.subject));
    }
    const stalls = SERVICES.flatMap((name) =>
      tail(procs.get(name)?.log ?? '', 2000)
        .split('\n')
        .filter((l) => l.includes('consumer loop failed'))
        .map((l) => {
          try {
            const entry = JSON.parse(l) as { durable?: string; err?: { message?: string } };
            return `${name}/${entry.durable}: ${entry.err?.message?.slice(0, 160)}`;
          } catch {
            return `${name}: ${l.slice(0, 160)}`;
          }
        }),
    );
    const unconsumed = [...new Set(poison.filter((p) => !owed.some((o) => o.poison === p)).map((p) => p.subject))];
    const report = [
      ...[...grouped.entries()].map(([what, subjects]) => `no dead letter: ${what} on ${[...subjects].join(', ')}`),
      ...verdict.bad,
      ...notStored.map((s) => `not stored in its stream: ${s}`),
      ...(verdict.missing.length > 0 && stalls.length > 0
        ? [`consumers that failed meanwhile (distinct): ${[...new Set(stalls)].join(' | ')}`]
        : []),
    ];
    if (unconsumed.length > 0) {
      // Not a failure: a subject no consumer takes has nobody to dead-letter it.
      console.info(`poison stored on subjects no consumer takes: ${unconsumed.map(unprefixed).join(', ')}`);
    }
    expect(report).toEqual([]);
  }, 60_000);

  it('a valid usage event sent afterwards is counted', async () => {
    const requestId = `after-fuzz-${randomUUID()}`;
    const now = Date.now();
    const posted = await api('POST', '/api/v1/usage/events', {
      headers: { 'x-api-key': bot.api_key },
      body: {
        request_id: requestId,
        bot_id: bot.id,
        status: 'completed',
        provider: 'openai',
        model: 'gpt-4o',
        channel: 'web',
        input_tokens: 7,
        output_tokens: 3,
        started_at: iso(now - 30_000),
        completed_at: iso(now - 29_000),
      },
    });
    expect(posted.status).toBe(202);
    const record = await eventually(async () => {
      const res = await api('GET', `/api/v1/usage/records?bot_id=${bot.id}&limit=200`, { token: adminToken });
      return (res.body?.items as { request_id: string; total_tokens: number }[] | undefined)?.find(
        (r) => r.request_id === requestId,
      );
    }, 12_000).catch(() => undefined);
    expect(record).toMatchObject({ request_id: requestId, total_tokens: 10 });
  }, 30_000);
});

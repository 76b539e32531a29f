import type { Client } from 'pg';

/**
 * Writes as a careful client does while parts of the system are killed: appends with a
 * `client_message_id` and usage batches with fixed request ids, each sent again (to the next
 * gateway, after a short pause) until acknowledged. It remembers what was acknowledged, so a
 * test can check afterwards that all of it is stored, once.
 *
 * A retry is taken only for what the contract calls retryable: the connection refused or cut
 * (a gateway killed), no answer within REQUEST_TIMEOUT_MS, or 503/504 with `retryable: true`.
 * Any other answer is recorded in `unexpected`, and so is an operation not acknowledged within
 * GIVE_UP_MS; a test expects both to stay empty.
 */
export interface LoadTarget {
  /** Base URLs of the gateways; requests go round them in turn. */
  gateways: string[];
  botId: string;
  botKey: string;
  /** The user the bot's sessions are for. */
  userId: string;
}

export interface LoadShape {
  sessions: number;
  /** Writers appending to each session at once (their seqs interleave). */
  writersPerSession: number;
  usageWriters: number;
  usageBatch: number;
}

const REQUEST_TIMEOUT_MS = 15_000;
const GIVE_UP_MS = 60_000;

interface Acked {
  id: string;
  seq: number;
}

export interface TrackedSession {
  id: string;
  /** client_message_id → the message the acknowledgement named. */
  acked: Map<string, Acked>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Load {
  readonly sessions: TrackedSession[] = [];
  /** Totals of the usage batches acknowledged with 202. */
  readonly usage = { batches: 0, events: 0, input: 0, output: 0 };
  appends = 0;
  /** Why requests were sent again, and how often. */
  readonly retries: Record<string, number> = {};
  /** How many operations took how many attempts. */
  readonly attempts: Record<number, number> = {};
  /** The longest an operation took from its first attempt to its acknowledgement. */
  longestMs = 0;
  readonly unexpected: string[] = [];
  private turn = 0;
  private stopping = false;
  private workers: Promise<void>[] = [];

  constructor(
    readonly target: LoadTarget,
    readonly shape: LoadShape,
    /** Makes this load's request and message ids unique. */
    readonly tag: string,
  ) {}

  /** Acknowledged operations so far (appends and usage batches). */
  get acknowledged(): number {
    return this.appends + this.usage.batches;
  }

  /** Sends until acknowledged (a status in `accept`), through `base` or else the gateways in turn. */
  async send(
    label: string,
    method: string,
    path: string,
    body: unknown,
    accept: number[],
    base?: string,
  ): Promise<any> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      const gateway = base ?? this.target.gateways[this.turn++ % this.target.gateways.length];
      let reason: string;
      try {
        const res = await fetch(`${gateway}${path}`, {
          method,
          headers: {
            'x-api-key': this.target.botKey,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const text = await res.text();
        let parsed: any;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = undefined;
        }
        if (accept.includes(res.status)) {
          this.attempts[attempt] = (this.attempts[attempt] ?? 0) + 1;
          this.longestMs = Math.max(this.longestMs, Date.now() - started);
          return { status: res.status, body: parsed };
        }
        if ((res.status === 503 || res.status === 504) && parsed?.retryable === true) {
          reason = `${res.status} ${parsed.code}`;
        } else {
          this.unexpected.push(`${label}: ${res.status} ${text.slice(0, 300)}`);
          throw new Unexpected(label);
        }
      } catch (error) {
        if (error instanceof Unexpected) throw error;
        const e = error as Error & { cause?: { code?: string } };
        reason = e.name === 'TimeoutError' ? 'no answer in time' : `connection: ${e.cause?.code ?? e.message}`;
      }
      this.retries[reason] = (this.retries[reason] ?? 0) + 1;
      if (Date.now() - started > GIVE_UP_MS) {
        this.unexpected.push(`${label}: not acknowledged within ${GIVE_UP_MS} ms (last: ${reason})`);
        throw new Unexpected(label);
      }
      await sleep(Math.min(1000, 50 * attempt));
    }
  }

  /** Creates the sessions (for the bot, as its key may) and starts every writer. */
  async start(): Promise<void> {
    for (let s = 0; s < this.shape.sessions; s++) {
      const created = await this.send(
        `session ${s}`,
        'POST',
        '/api/v1/sessions',
        {
          title: `${this.tag} ${s}`,
          user_id: this.target.userId,
        },
        [201],
      );
      this.sessions.push({ id: created.body.id, acked: new Map() });
    }
    for (const session of this.sessions) {
      for (let w = 0; w < this.shape.writersPerSession; w++) this.workers.push(this.appender(session, w));
    }
    for (let w = 0; w < this.shape.usageWriters; w++) this.workers.push(this.reporter(w));
  }

  /** Lets every writer finish what it has begun (acknowledged) and stop. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled(this.workers);
  }

  /** Waits until `n` more operations than now are acknowledged (or an unexpected answer, or the time is up). */
  async progress(n: number, timeoutMs = 60_000): Promise<void> {
    const goal = this.acknowledged + n;
    const deadline = Date.now() + timeoutMs;
    while (this.acknowledged < goal) {
      if (this.unexpected.length > 0) throw new Error(`unexpected answers:\n${this.unexpected.join('\n')}`);
      if (Date.now() > deadline) {
        throw new Error(`only ${this.acknowledged} of ${goal} operations acknowledged within ${timeoutMs} ms`);
      }
      await sleep(50);
    }
  }

  /** A one-line account of the run, for the test's log. */
  summary(): string {
    return JSON.stringify({
      appends: this.appends,
      usage: this.usage,
      attempts: this.attempts,
      longest_ms: this.longestMs,
      retries: this.retries,
    });
  }

  private async appender(session: TrackedSession, writer: number): Promise<void> {
    const index = this.sessions.indexOf(session);
    for (let i = 0; !this.stopping; i++) {
      const cmid = `${this.tag}-s${index}-w${writer}-${i}`;
      const res = await this.send(
        `append ${cmid}`,
        'POST',
        `/api/v1/sessions/${session.id}/messages`,
        { role: 'user', content: `message ${cmid}`, client_message_id: cmid },
        [200, 201],
      );
      if (res.body?.client_message_id !== cmid) {
        this.unexpected.push(`append ${cmid}: answered with ${JSON.stringify(res.body).slice(0, 300)}`);
        return;
      }
      session.acked.set(cmid, { id: res.body.id, seq: res.body.seq });
      this.appends++;
    }
  }

  private async reporter(writer: number): Promise<void> {
    for (let b = 0; !this.stopping; b++) {
      const startedAt = new Date(Date.now() - 60_000).toISOString();
      const events = Array.from({ length: this.shape.usageBatch }, (_, j) => ({
        request_id: `${this.tag}-u${writer}-${b}-${j}`,
        bot_id: this.target.botId,
        status: 'completed',
        provider: 'acme',
        model: 'scale',
        input_tokens: 1 + ((b * 31 + j * 7 + writer) % 997),
        output_tokens: 1 + ((b * 17 + j * 3 + writer) % 89),
        started_at: startedAt,
      }));
      // The same events, ids and times on every attempt: a retry repeats, never reinvents.
      await this.send(`usage batch ${writer}/${b}`, 'POST', '/api/v1/usage/events', { events }, [202]);
      this.usage.batches++;
      this.usage.events += events.length;
      for (const e of events) {
        this.usage.input += e.input_tokens;
        this.usage.output += e.output_tokens;
      }
    }
  }

  /**
   * What is stored against what was acknowledged, through the gateway `base`: each session's
   * messages are seq 1..n without gap or repeat, exactly the acknowledged client_message_ids
   * (each with the id and seq its acknowledgement named), and `message_count` is n. Returns the
   * problems found, none when all holds.
   */
  async checkMessages(base: string): Promise<string[]> {
    const problems: string[] = [];
    for (const session of this.sessions) {
      const stored: { id: string; seq: number; client_message_id: string }[] = [];
      let cursor: string | null = null;
      do {
        const page = await this.send(
          `list ${session.id}`,
          'GET',
          `/api/v1/sessions/${session.id}/messages?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
          undefined,
          [200],
          base,
        );
        stored.push(...page.body.items);
        cursor = page.body.next_cursor;
      } while (cursor);
      const n = session.acked.size;
      const seqs = stored.map((m) => m.seq);
      const gaps = seqs.filter((seq, i) => seq !== i + 1);
      if (stored.length !== n) problems.push(`${session.id}: ${stored.length} messages stored, ${n} acknowledged`);
      if (gaps.length > 0) problems.push(`${session.id}: seqs not 1..${stored.length}: ${seqs.join(',')}`);
      const seen = new Set<string>();
      for (const m of stored) {
        const acked = session.acked.get(m.client_message_id);
        if (seen.has(m.client_message_id)) problems.push(`${session.id}: ${m.client_message_id} stored twice`);
        seen.add(m.client_message_id);
        if (!acked) problems.push(`${session.id}: ${m.client_message_id} stored but never acknowledged`);
        else if (acked.id !== m.id || acked.seq !== m.seq) {
          problems.push(`${session.id}: ${m.client_message_id} acknowledged as ${acked.seq}, stored as ${m.seq}`);
        }
      }
      for (const cmid of session.acked.keys()) {
        if (!seen.has(cmid)) problems.push(`${session.id}: ${cmid} acknowledged but not stored`);
      }
      // The session's counter follows the appends within about a second (coalesced, decisions/0024).
      let count: number | undefined;
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(250)) {
        count = (await this.send(`get ${session.id}`, 'GET', `/api/v1/sessions/${session.id}`, undefined, [200], base))
          .body.message_count;
        if (count === n) break;
      }
      if (count !== n) problems.push(`${session.id}: message_count ${count}, ${n} acknowledged`);
    }
    return problems;
  }

  /**
   * The usage service's tables against the acknowledged batches, once it has recorded as many
   * events as were acknowledged (waiting up to `timeoutMs`): records, hourly and daily rollups
   * hold exactly the acknowledged events and tokens. `drained` is asked before the final count,
   * so events still on their way cannot be missed. Returns the problems found.
   */
  async checkUsage(pg: Client, schema: string, drained: () => Promise<boolean>, timeoutMs = 90_000): Promise<string[]> {
    const { events, input, output } = this.usage;
    const expected: Record<string, string> = {
      usage_records: `${events} ${input} ${output} ${input + output}`,
      usage_hourly: `${events} ${input} ${output} ${input + output}`,
      usage_daily: `${events} ${input + output}`,
    };
    const sums: Record<string, string> = {
      usage_records: `count(*), sum(input_tokens), sum(output_tokens), sum(total_tokens)`,
      usage_hourly: `sum(requests), sum(input_tokens), sum(output_tokens), sum(total_tokens)`,
      usage_daily: `sum(requests), sum(total_tokens)`,
    };
    const totals = async (table: string) =>
      (
        await pg.query<{ t: string }>(
          `select concat_ws(' ', ${sums[table]}) as t from "${schema}".${table} where bot_id = $1`,
          [this.target.botId],
        )
      ).rows[0].t;
    const deadline = Date.now() + timeoutMs;
    while (!((await totals('usage_records')) === expected.usage_records && (await drained()))) {
      if (Date.now() > deadline) break;
      await sleep(250);
    }
    const problems: string[] = [];
    for (const table of Object.keys(expected)) {
      const got = await totals(table);
      if (got !== expected[table]) problems.push(`${table}: ${got}, acknowledged ${expected[table]}`);
    }
    return problems;
  }
}

class Unexpected extends Error {}

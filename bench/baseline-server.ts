/**
 * The baseline for bench/messages.ts: one Fastify process, no NATS hop, no auth, doing the
 * same work on the same Postgres — a gapless per-session seq (locked counter row) and an
 * insert per append; the newest 50 by seq per list.
 */
import Fastify from 'fastify';
import { Pool } from 'pg';

const schema = process.env.BASELINE_SCHEMA ?? 'baseline';
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });

async function main(): Promise<void> {
  await pool.query(`create schema if not exists "${schema}"`);
  await pool.query(
    `create table if not exists "${schema}".counters (session_id uuid primary key, last_seq int not null default 0)`,
  );
  await pool.query(`create table if not exists "${schema}".messages (
      id uuid primary key default gen_random_uuid(), session_id uuid not null, seq int not null, role text not null,
      content text not null, tokens int not null default 0, metadata jsonb not null default '{}', created_at timestamptz not null default now(),
      unique (session_id, seq))`);
  const app = Fastify({ logger: false });
  app.post<{
    Params: { id: string };
    Body: { role: string; content: string; tokens?: number; metadata?: Record<string, unknown> };
  }>('/sessions/:id/messages', async (request, reply) => {
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`insert into "${schema}".counters (session_id) values ($1) on conflict do nothing`, [
        request.params.id,
      ]);
      const { rows } = await client.query(
        `update "${schema}".counters set last_seq = last_seq + 1 where session_id = $1 returning last_seq`,
        [request.params.id],
      );
      const inserted = await client.query(
        `insert into "${schema}".messages (session_id, seq, role, content, tokens, metadata) values ($1, $2, $3, $4, $5, $6) returning *`,
        [
          request.params.id,
          rows[0].last_seq,
          request.body.role,
          request.body.content,
          request.body.tokens ?? 0,
          JSON.stringify(request.body.metadata ?? {}),
        ],
      );
      await client.query('commit');
      return reply.status(201).send(inserted.rows[0]);
    } catch (error) {
      await client.query('rollback');
      throw error;
    } finally {
      client.release();
    }
  });
  app.get<{ Params: { id: string } }>('/sessions/:id/messages', async (request) => {
    const { rows } = await pool.query(
      `select * from "${schema}".messages where session_id = $1 order by seq desc limit 50`,
      [request.params.id],
    );
    return { items: rows, next_cursor: null };
  });
  await app.listen({ port: Number(process.env.BASELINE_PORT ?? 0), host: '127.0.0.1' });
  process.stdout.write(`listening ${(app.server.address() as { port: number }).port}\n`);
  const stop = async () => {
    await app.close();
    await pool.end();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

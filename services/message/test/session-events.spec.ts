import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { jetstream } from '@nats-io/jetstream';
import { Nats, RpcClient, createServiceApp, startServing } from '@parley/kit';
import { SessionScopeFenceRpc } from '@parley/contracts';
import { v7 as uuidv7 } from 'uuid';
import { AppModule } from '../src/app.module';
import { loadConfig } from '../src/config';
import { MessageEntity, SessionScopeEntity } from '../src/messages/message.entity';
import { SessionEventsConsumer } from '../src/messages/session-events.consumer';
import { DATABASE_URL, NATS_URL, cleanupRun, runId } from '../../../test/support/stack';

const id = runId('msg');

async function eventually(probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe(SessionEventsConsumer.name, () => {
  let app: INestApplication;
  let orm: MikroORM;
  let nats: Nats;

  beforeAll(async () => {
    const config = loadConfig({
      DATABASE_URL,
      NATS_URL,
      DB_SCHEMA_PREFIX: `${id}_`,
      NATS_SUBJECT_PREFIX: id,
      LOG_LEVEL: 'silent',
    });
    app = await createServiceApp(AppModule.forRoot(config), { logger: false });
    await startServing(app);
    orm = app.get(MikroORM);
    nats = app.get(Nats);
  });

  afterAll(async () => {
    await app.close();
    await cleanupRun(id);
  });

  it('keeps the scope of a session and deletes its messages when the session is deleted', async () => {
    const js = jetstream(nats.connection);
    const sessionId = uuidv7();
    const other = uuidv7();
    const event = (sid: string) => ({
      session_id: sid,
      user_id: '01900000-0000-7000-8000-00000000000a',
      bot_id: null,
      group_ids: [],
      occurred_at: new Date().toISOString(),
    });
    await js.publish(nats.subject('evt.session.created'), JSON.stringify(event(sessionId)));
    await eventually(async () => (await orm.em.fork().count(SessionScopeEntity, { sessionId })) === 1);

    const em = orm.em.fork();
    for (const [sid, seq] of [
      [sessionId, 1],
      [sessionId, 2],
      [other, 1],
    ] as const) {
      em.create(MessageEntity, {
        id: uuidv7(),
        sessionId: sid,
        seq,
        role: 'user',
        content: 'hi',
        tokens: 0,
        metadata: {},
        media: [],
        feedback: null,
        copied: false,
        sensitiveStatus: 'unchecked',
        clientMessageId: null,
        createdAt: new Date(),
        sizeBytes: 300,
      });
    }
    await em.flush();

    await js.publish(nats.subject('evt.session.deleted'), JSON.stringify(event(sessionId)));
    // The same event again (a redelivery) changes nothing.
    await js.publish(nats.subject('evt.session.deleted'), JSON.stringify(event(sessionId)));
    await eventually(async () => (await orm.em.fork().count(MessageEntity, { sessionId })) === 0);
    expect(await orm.em.fork().count(MessageEntity, { sessionId: other })).toBe(1);
    // The scope row stays as a tombstone, so no late append can bring the session back.
    expect((await orm.em.fork().findOneOrFail(SessionScopeEntity, { sessionId })).status).toBe('deleted');
  });

  it('applies only newer events, keeps a fence until the awaited event, and keeps a deleted session deleted', async () => {
    const js = jetstream(nats.connection);
    const sessionId = uuidv7();
    const owner = {
      session_id: sessionId,
      user_id: '01900000-0000-7000-8000-00000000000b',
      bot_id: null,
      group_ids: [],
    };
    const at = (minute: number) => new Date(Date.UTC(2026, 10, 30, 12, minute)).toISOString();
    const row = () => orm.em.fork().findOne(SessionScopeEntity, { sessionId });
    const publish = (kind: string, minute: number, status?: string) =>
      js.publish(nats.subject(`evt.session.${kind}`), JSON.stringify({ ...owner, status, occurred_at: at(minute) }));

    await publish('created', 1, 'active');
    await eventually(async () => (await row())?.status === 'active');

    // The session service fences before it commits a change that occurs at minute 3.
    await app.get(RpcClient).call(SessionScopeFenceRpc, { ...owner, until: at(3) });
    expect((await row())?.fencedUntil?.toISOString()).toBe(at(3));

    // An older event (a late redelivery) changes nothing; an event before the awaited one
    // applies but leaves the fence; the awaited one lifts it.
    await publish('updated', 0, 'archived');
    await publish('updated', 2, 'archived');
    await eventually(async () => (await row())?.status === 'archived');
    expect((await row())?.fencedUntil?.toISOString()).toBe(at(3));
    await publish('updated', 3, 'active');
    await eventually(async () => (await row())?.fencedUntil === null);
    expect((await row())?.status).toBe('active');
    expect((await row())?.scopeAt?.toISOString()).toBe(at(3));

    // An event from before statuses were announced leaves the status unknown.
    await publish('updated', 4);
    await eventually(async () => (await row())?.status === null);

    // After a deletion, later events and fences do not bring the session back.
    await publish('deleted', 5, 'active');
    await eventually(async () => (await row())?.status === 'deleted');
    await publish('updated', 6, 'active');
    await app.get(RpcClient).call(SessionScopeFenceRpc, { ...owner, until: at(7) });
    await publish('created', 8, 'active');
    await new Promise((r) => setTimeout(r, 500));
    expect((await row())?.status).toBe('deleted');
  });
});

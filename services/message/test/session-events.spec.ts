import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { MikroORM } from '@mikro-orm/postgresql';
import { jetstream } from '@nats-io/jetstream';
import { Nats, createServiceApp, startServing } from '@parley/kit';
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
    expect(await orm.em.fork().count(SessionScopeEntity, { sessionId })).toBe(0);
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTopicNames } from '../../../src/lib/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { consumeRecords, waitForTopics } from '../../helpers/kafka.js';
import { createPrivateKafka, type PrivateKafka } from '../../helpers/private-kafka.js';
import { createRegistrySeeder, postEvent, publishEvent } from '../../helpers/telemetry.js';

const TENANT = 'outage';

describe('telemetry ingestion through a Kafka outage', () => {
  let kafka: PrivateKafka;
  let ctx: TestContext;
  let app: FastifyInstance;
  let seed: ReturnType<typeof createRegistrySeeder>;
  let device: string;

  before(async () => {
    kafka = await createPrivateKafka();
    await kafka.start();
    ctx = await createTestContext({ KAFKA_BROKERS: kafka.brokers, INGEST_PRODUCE_TIMEOUT_MS: '1500' });
    seed = createRegistrySeeder(ctx.db.url);
    await seed.tenant(TENANT);
    device = await seed.device(TENANT);
    app = await ctx.app();
    // Reconciled by the app at start-up, in the background.
    await waitForTopics(createTopicNames(ctx.config.kafka.topicPrefix).forTenant(TENANT), { brokers: kafka.brokers });
  });
  after(async () => {
    await seed?.close();
    await ctx?.close();
    await kafka?.destroy();
  });

  it('answers 503 while Kafka is down; replaying the 503s afterwards loses nothing and repeats only what was in flight', async () => {
    type Event = ReturnType<typeof publishEvent>;
    const answered: { event: Event; status: number }[] = [];
    let sequence = 0;
    const send = async () => {
      const event = publishEvent(device, JSON.stringify({ sequence: sequence++ }));
      const response = await postEvent(app, event);
      answered.push({ event, status: response.statusCode });
    };

    for (let i = 0; i < 20; i++) await send();
    // Calls keep coming while the broker goes down, and for a while after.
    let streaming = true;
    const stream = (async () => {
      while (streaming) await send();
    })();
    await kafka.stop();
    const whileDown = answered.length;
    for (let i = 0; i < 10; i++) await send();
    streaming = false;
    await stream;

    const statuses = answered.map((a) => a.status);
    assert.ok(statuses.every((s) => s === 204 || s === 503), `only 204 or 503: ${[...new Set(statuses)].join(',')}`);
    assert.deepEqual(statuses.slice(whileDown), statuses.slice(whileDown).map(() => 503), 'every call while down is 503');
    assert.deepEqual(statuses.slice(0, 20), Array(20).fill(204));

    await kafka.start();
    // As EMQX would: retry each 503'd call until it is answered 2xx.
    const retried = answered.filter((a) => a.status === 503);
    for (const { event } of retried) {
      let status = 503;
      for (let attempt = 0; status !== 204 && attempt < 60; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 500));
        status = (await postEvent(app, event)).statusCode;
        assert.ok(status === 204 || status === 503, `replay answered ${status}`);
      }
      assert.equal(status, 204, 'the replay went through once Kafka was back');
    }
    // EMQX may also repeat calls that did succeed (a lost response): still once each.
    for (const { event } of answered.slice(0, 5)) assert.equal((await postEvent(app, event)).statusCode, 204);

    const topic = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(TENANT);
    const records = await consumeRecords([topic], answered.length, { brokers: kafka.brokers, timeoutMs: 30_000, settleMs: 2000 });
    const counts = new Map<string, number>();
    for (const record of records) {
      const id = (JSON.parse(record.value ?? '{}') as { message_id: string }).message_id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    assert.ok(retried.length > 0, 'some calls were answered 503');
    // A message answered 204 is there once, its repeats included. One answered 503
    // is there at least once, and twice at most: a produce that timed out while
    // the broker went down may still have reached it (docs/telemetry.md, Duplicates).
    for (const { event, status } of answered) {
      const copies = counts.get(event.id) ?? 0;
      if (status === 204) assert.equal(copies, 1, `message ${event.id}, answered 204, exactly once`);
      else assert.ok(copies === 1 || copies === 2, `message ${event.id}, answered 503 and replayed, ${copies} times`);
    }
    const twice = retried.filter(({ event }) => counts.get(event.id) === 2).length;
    assert.ok(twice <= 3, `${twice} replayed messages twice: only those in flight when the broker stopped can be`);

    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_telemetry_unavailable_total\{reason="kafka_unavailable"\} [1-9]/m);
  });
});

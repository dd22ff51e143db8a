import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTopicNames } from '../src/lib/topics.js';
import { adminClient } from './helpers/admin.js';
import { createTestContext, type TestContext } from './helpers/context.js';
import { connectAs } from './helpers/emqx-auth.js';
import { consumeRecords, waitForTopics } from './helpers/kafka.js';
import { createPrivateKafka, type PrivateKafka } from './helpers/private-kafka.js';
import { postEvent, publishEvent } from './helpers/telemetry.js';

const TENANT = 'kafka-outage';

/**
 * As an operator would try it: with Kafka stopped the replica stays ready (a
 * Kafka outage must not take every replica out of the Service), a device
 * nobody has seen before still connects, telemetry answers 503 for EMQX to
 * retry, and once Kafka is back the retried event lands exactly once.
 */
describe('/readyz through a Kafka outage', () => {
  let ctx: TestContext;
  let kafka: PrivateKafka;
  let app: FastifyInstance;

  before(async () => {
    kafka = await createPrivateKafka();
    await kafka.start();
    ctx = await createTestContext({ KAFKA_BROKERS: kafka.brokers, INGEST_PRODUCE_TIMEOUT_MS: '1500' });
    app = await ctx.app();
    // A tenant's topics are created with it: before the outage.
    assert.equal((await adminClient(app).post('/v1/tenants', { id: TENANT, name: 'Outage' })).statusCode, 201);
    await waitForTopics(createTopicNames(ctx.config.kafka.topicPrefix).forTenant(TENANT), { brokers: kafka.brokers });
  });
  after(async () => {
    await ctx?.close();
    await kafka?.destroy();
  });

  const ready = async () => {
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    return { status: response.statusCode, body: response.json() as { status: string; down: string[]; checks: Record<string, string> } };
  };
  const kafkaUp = async () => {
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    const match = /^devicelink_dependency_up\{dependency="kafka"\} (\d)$/m.exec(metrics);
    assert.ok(match, 'devicelink_dependency_up{dependency="kafka"} is exported');
    return Number(match[1]);
  };

  it('stays ready and reports Kafka down; a never-seen device connects; telemetry is 503, then lands exactly once', async () => {
    const before = await ready();
    assert.equal(before.status, 200);
    assert.deepEqual(before.body.down, []);
    assert.equal(await kafkaUp(), 1);

    await kafka.stop();
    const whileDown = await ready();
    assert.equal(whileDown.status, 200, 'a Kafka outage leaves the replica in the Service');
    assert.equal(whileDown.body.status, 'ready');
    assert.deepEqual(whileDown.body.down, ['kafka'], 'Kafka is reported down in the body');
    assert.deepEqual(whileDown.body.checks, { postgres: 'up', redis: 'up', kafka: 'down' });
    assert.equal(await kafkaUp(), 0, 'and in the metric');

    // A device created during the outage, never seen by this replica.
    const admin = adminClient(app);
    const created = await admin.post(`/v1/tenants/${TENANT}/devices`, { name: 'born in the outage' });
    assert.equal(created.statusCode, 201, created.body);
    const device = (created.json() as { id: string }).id;
    const issued = await admin.post(`/v1/devices/${device}/keys`, { label: 'factory' });
    assert.equal(issued.statusCode, 201, issued.body);
    assert.equal(await connectAs(app, device, (issued.json() as { key: string }).key), 'allow');

    const event = publishEvent(device, JSON.stringify({ temperature: 21.5 }));
    assert.equal((await postEvent(app, event)).statusCode, 503, 'telemetry answers 503 for EMQX to retry');

    await kafka.start();
    // As EMQX does: the same event again until it is answered 2xx.
    let status = 503;
    for (let attempt = 0; status !== 204 && attempt < 60; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = (await postEvent(app, event)).statusCode;
      assert.ok(status === 204 || status === 503, `the retry answered ${status}`);
    }
    assert.equal(status, 204, 'the retry went through once Kafka was back');

    const topic = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(TENANT);
    const records = await consumeRecords([topic], 1, { brokers: kafka.brokers, timeoutMs: 30_000, settleMs: 3000 });
    const copies = records.filter((record) => (JSON.parse(record.value ?? '{}') as { message_id: string }).message_id === event.id);
    assert.equal(copies.length, 1, `the event landed ${copies.length} times`);

    let back = await ready();
    for (let attempt = 0; back.body.down.length > 0 && attempt < 20; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      back = await ready();
    }
    assert.equal(back.status, 200);
    assert.deepEqual(back.body.down, [], JSON.stringify(back.body));
    assert.equal(await kafkaUp(), 1);
  });
});

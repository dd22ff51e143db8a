import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { MqttClient } from 'mqtt';
import { createTopicNames } from '../../../src/lib/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { consumeRecords, waitForTopics } from '../../helpers/kafka.js';
import { createPrivateMosquitto, type PrivateMosquitto } from '../../helpers/private-mosquitto.js';
import { connectDevice, publishQos1, subscriptionEnv } from '../../helpers/subscription.js';
import { createRegistrySeeder } from '../../helpers/telemetry.js';

const TENANT = 'subscribed';
const PASSWORD = 'device-password-0123456789';

describe('telemetry ingest by MQTT 5 shared subscription (a real Mosquitto 2)', () => {
  let broker: PrivateMosquitto;
  let ctx: TestContext;
  let app: FastifyInstance;
  let seed: ReturnType<typeof createRegistrySeeder>;
  let topics: ReturnType<ReturnType<typeof createTopicNames>['forTenant']>;
  const names = () => createTopicNames(ctx.config.kafka.topicPrefix);
  const clients: MqttClient[] = [];

  before(async () => {
    // A gateway identity that a mistaken ACL lets publish on every device's topic.
    broker = await createPrivateMosquitto({ aclExtra: 'user misconfigured-gateway\ntopic write devices/+/telemetry' });
    await broker.start();
    ctx = await createTestContext(subscriptionEnv(broker));
    seed = createRegistrySeeder(ctx.db.url);
    await seed.tenant(TENANT);
    topics = names().forTenant(TENANT);
    app = await ctx.app();
    await waitForTopics(topics);
  });
  after(async () => {
    await Promise.allSettled(clients.map((client) => client.endAsync(true)));
    await seed?.close();
    await ctx?.close();
    await broker?.destroy();
  });

  const device = async () => {
    const id = await seed.device(TENANT);
    const client = await connectDevice(broker, id, PASSWORD);
    clients.push(client);
    return { id, client };
  };

  it('produces the TelemetryPoint of a device publishing on its topic, and keeps a repeated message_id out', async () => {
    const { id, client } = await device();
    const before = Date.now();
    assert.equal(await publishQos1(client, `devices/${id}/telemetry`, '{"temperature":21.5,"state":"running"}', { message_id: 'm-1' }), 0);
    assert.equal(await publishQos1(client, `devices/${id}/telemetry`, '{"temperature":21.5,"state":"running"}', { message_id: 'm-1' }), 0);
    assert.equal(await publishQos1(client, `devices/${id}/telemetry`, '{"temperature":22}'), 0);
    const records = (await consumeRecords([topics[0] as string], 2, { settleMs: 1500 })).filter((record) => record.key === id);
    assert.equal(records.length, 2, 'the repeat of message_id m-1 is produced once');
    const first = JSON.parse(records[0]?.value ?? '{}') as Record<string, unknown>;
    assert.equal(first.device_id, id);
    assert.equal(first.tenant_id, TENANT);
    assert.equal(first.message_id, 'm-1');
    assert.deepEqual(first.numeric_values, { temperature: 21.5 });
    assert.deepEqual(first.string_values, { state: 'running' });
    assert.ok(Date.parse(String(first.received_at)) >= before - 1000, 'received_at is the arrival at the service');
    assert.equal(records[0]?.headers.device_id, id);
    const second = JSON.parse(records[1]?.value ?? '{}') as Record<string, unknown>;
    assert.match(String(second.message_id), /^[0-9A-F]{32}$/, 'an id assigned on arrival when the device sets none');
    // Liveness is fed as by the webhook.
    const status = await app.inject({ method: 'GET', url: `/v1/devices/${id}/status`, headers: { authorization: 'Bearer test-root-admin-token-0123456789' } });
    assert.equal(status.statusCode, 200);
  });

  it('keeps each device’s order across 1,000 messages from 10 devices', async () => {
    const devices = await Promise.all(Array.from({ length: 10 }, () => device()));
    await Promise.all(
      devices.map(async ({ id, client }) => {
        // Published without waiting for each PUBACK: the broker keeps a client's order.
        await Promise.all(Array.from({ length: 100 }, (_, sequence) => publishQos1(client, `devices/${id}/telemetry`, JSON.stringify({ sequence }))));
      }),
    );
    const ids = new Set<string>(devices.map((d) => d.id));
    const records = (await consumeRecords([topics[0] as string], 1000, { timeoutMs: 60_000, settleMs: 2000 })).filter((r) => r.key !== null && ids.has(r.key));
    assert.equal(records.length, 1000);
    for (const { id } of devices) {
      const sequences = records.filter((r) => r.key === id).map((r) => (JSON.parse(r.value ?? '{}') as { numeric_values: { sequence: number } }).numeric_values.sequence);
      assert.deepEqual(sequences, Array.from({ length: 100 }, (_, i) => i), `device ${id} in order`);
    }
  });

  it('refuses, by ACL, a device publishing on another device’s topic', async () => {
    const a = await device();
    const b = await device();
    assert.equal(await publishQos1(a.client, `devices/${b.id}/telemetry`, '{"forged":1}'), 135, 'PUBACK: not authorized');
    assert.equal(await publishQos1(b.client, `devices/${b.id}/telemetry`, '{"own":1}'), 0);
    const records = (await consumeRecords([topics[0] as string], 1003, { timeoutMs: 5000 })).filter((r) => r.key === b.id);
    assert.deepEqual(records.map((r) => (JSON.parse(r.value ?? '{}') as { numeric_values: unknown }).numeric_values), [{ own: 1 }]);
  });

  it('dead-letters, unattributed, what a mistaken ACL lets through on a topic naming no device', async () => {
    const gateway = await connectDevice(broker, `gw-${randomUUID()}`, PASSWORD, 'misconfigured-gateway');
    clients.push(gateway);
    const unknown = randomUUID();
    assert.equal(await publishQos1(gateway, `devices/${unknown}/telemetry`, '{"x":1}'), 0);
    assert.equal(await publishQos1(gateway, 'devices/not-a-device/telemetry', '{"x":2}'), 0);
    const dlq = (await consumeRecords([names().unattributedDlq], 2, { timeoutMs: 20_000 })).map((r) => JSON.parse(r.value ?? '{}') as Record<string, unknown>);
    const topicsSeen = dlq.map((letter) => letter.topic).sort();
    assert.deepEqual(topicsSeen, ['devices/not-a-device/telemetry', `devices/${unknown}/telemetry`].sort());
    for (const letter of dlq) {
      assert.equal(letter.reason, 'unknown_device');
      assert.equal(letter.tenant_id, null);
      assert.equal(letter.device_id, null);
    }
    // Nothing was attributed to a tenant.
    const raw = await consumeRecords([topics[0] as string], 100_000, { timeoutMs: 3000 });
    assert.ok(raw.every((r) => r.key !== unknown));
  });
});

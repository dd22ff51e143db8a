import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { createTopicNames } from '../../../src/lib/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { testEnv } from '../../helpers/env.js';
import { consumeRecords, waitForTopics, type ConsumedRecord } from '../../helpers/kafka.js';
import { createPrivateKafka, type PrivateKafka } from '../../helpers/private-kafka.js';
import { createPrivateMosquitto, type PrivateMosquitto } from '../../helpers/private-mosquitto.js';
import { connectDevice, publishQos1, subscriptionEnv } from '../../helpers/subscription.js';
import { createRegistrySeeder } from '../../helpers/telemetry.js';

const PASSWORD = 'device-password-0123456789';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Each device's sequences as Kafka has them, in Kafka's order. */
function sequencesByDevice(records: readonly ConsumedRecord[]): Map<string, number[]> {
  const byDevice = new Map<string, number[]>();
  for (const record of records) {
    const sequence = (JSON.parse(record.value ?? '{}') as { numeric_values: { sequence: number } }).numeric_values.sequence;
    const list = byDevice.get(record.key ?? '') ?? [];
    list.push(sequence);
    byDevice.set(record.key ?? '', list);
  }
  return byDevice;
}

/** Every sequence 0..count-1 is there, and their first copies are in order (a repeat only ever follows its original). */
function assertComplete(sequences: readonly number[] | undefined, count: number, device: string) {
  assert.ok(sequences, `device ${device} has records`);
  const firsts: number[] = [];
  const seen = new Set<number>();
  for (const sequence of sequences) {
    if (seen.has(sequence)) continue;
    seen.add(sequence);
    firsts.push(sequence);
  }
  assert.deepEqual(firsts, Array.from({ length: count }, (_, i) => i), `device ${device}: all ${count}, first copies in order`);
}

/** Devices publishing {sequence} at QoS 1 until stopped; resolves with how many each had acknowledged by the broker. */
function publishUntil(devices: readonly { id: string; client: MqttClient }[], everyMs: number) {
  let running = true;
  const done = Promise.all(
    devices.map(async ({ id, client }) => {
      let sequence = 0;
      while (running) {
        assert.equal(await publishQos1(client, `devices/${id}/telemetry`, JSON.stringify({ sequence })), 0);
        sequence++;
        await sleep(everyMs);
      }
      return sequence;
    }),
  );
  return {
    stop: async () => {
      running = false;
      return done;
    },
  };
}

describe('telemetry ingest by subscription through faults', () => {
  let kafka: PrivateKafka;
  let broker: PrivateMosquitto;
  let ctx: TestContext;
  let seed: ReturnType<typeof createRegistrySeeder>;
  const clients: MqttClient[] = [];
  const children: ChildProcess[] = [];

  before(async () => {
    kafka = await createPrivateKafka();
    await kafka.start(); broker = await createPrivateMosquitto();
    await broker.start();
    ctx = await createTestContext({ KAFKA_BROKERS: kafka.brokers, INGEST_PRODUCE_TIMEOUT_MS: '1500', ...subscriptionEnv(broker) });
    seed = createRegistrySeeder(ctx.db.url);
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await Promise.allSettled(clients.map((client) => client.endAsync(true)));
    await seed?.close();
    await ctx?.close();
    await broker?.destroy();
    await kafka?.destroy();
  });

  const devices = async (tenant: string, count: number) =>
    Promise.all(
      Array.from({ length: count }, async () => {
        const id = await seed.device(tenant);
        const client = await connectDevice(broker, id, PASSWORD);
        clients.push(client);
        return { id, client };
      }),
    );

  it('loses nothing while Kafka is down for 10 s under load, and keeps each device’s order', async (t) => {
    const tenant = 'kafka-down';
    await seed.tenant(tenant);
    const app = await ctx.app({}, { INGEST_MQTT_CLIENT_ID: 'outage' });
    // Closed whatever happens: a member left in the group would take half of the next test's messages.
    t.after(() => app.close());
    const raw = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(tenant);
    await waitForTopics([raw], { brokers: kafka.brokers });
    const publishing = await devices(tenant, 5);
    // 25 messages a second per device: a device's backlog drains at one message per Kafka round trip once the broker is back.
    const load = publishUntil(publishing, 40);
    await sleep(2000);
    await kafka.stop(); await sleep(10_000);
    await kafka.start(); await sleep(2000);
    const published = await load.stop(); const total = published.reduce((sum, count) => sum + count, 0);
    const records = await consumeRecords([raw], total, { brokers: kafka.brokers, timeoutMs: 180_000, settleMs: 2000 });
    const byDevice = sequencesByDevice(records);
    publishing.forEach(({ id }, index) => assertComplete(byDevice.get(id), published[index] ?? 0, id));
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_telemetry_unavailable_total\{reason="kafka_unavailable"\} [1-9]/m, 'it waited for Kafka, retrying');
  });

  it('loses nothing when the service is killed mid-stream and restarted', async () => {
    const tenant = 'killed';
    await seed.tenant(tenant);
    const env = { ...testEnv(ctx.tag, ctx.db.url, { KAFKA_BROKERS: kafka.brokers, ...subscriptionEnv(broker), INGEST_MQTT_CLIENT_ID: 'killed' }) };
    const startService = () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env: { ...process.env, ...env }, stdio: 'ignore' });
      children.push(child);
      return child;
    };
    const raw = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(tenant);
    let service = startService();
    await waitForTopics([raw], { brokers: kafka.brokers, timeoutMs: 60_000 });
    const publishing = await devices(tenant, 5);
    const load = publishUntil(publishing, 20);
    await sleep(3000);
    service.kill('SIGKILL');
    await new Promise((resolve) => service.once('exit', resolve));
    // Published while no subscriber is there: the broker keeps them in the session.
    await sleep(2000);
    service = startService();
    await sleep(3000);
    const published = await load.stop(); const total = published.reduce((sum, count) => sum + count, 0);
    const records = await consumeRecords([raw], total, { brokers: kafka.brokers, timeoutMs: 180_000, settleMs: 2000 });
    const byDevice = sequencesByDevice(records);
    publishing.forEach(({ id }, index) => assertComplete(byDevice.get(id), published[index] ?? 0, id));
    service.kill('SIGTERM');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTopicNames } from '../../../src/lib/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { consumeRecords, waitForTopics, type ConsumedRecord } from '../../helpers/kafka.js';
import { createRegistrySeeder, messageId, postEvent, publishEvent } from '../../helpers/telemetry.js';

const TENANT = 'acme';
const OTHER_TENANT = 'globex';

function byMessageId(records: ConsumedRecord[]): Map<string, { record: ConsumedRecord; value: Record<string, unknown> }> {
  const found = new Map<string, { record: ConsumedRecord; value: Record<string, unknown> }>();
  for (const record of records) {
    const value = JSON.parse(record.value ?? 'null') as Record<string, unknown>;
    found.set(String(value.message_id), { record, value });
  }
  return found;
}

describe('telemetry ingestion into Kafka', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let seed: ReturnType<typeof createRegistrySeeder>;
  let device: string;
  let rawTopic: string;
  let dlqTopic: string;
  let unattributedTopic: string;

  before(async () => {
    ctx = await createTestContext();
    seed = createRegistrySeeder(ctx.db.url);
    await seed.tenant(TENANT);
    await seed.tenant(OTHER_TENANT);
    device = await seed.device(TENANT);
    app = await ctx.app();
    const topics = createTopicNames(ctx.config.kafka.topicPrefix);
    rawTopic = topics.telemetryRaw(TENANT);
    dlqTopic = topics.telemetryDlq(TENANT);
    unattributedTopic = topics.unattributedDlq;
    // Reconciled by the app at start-up, in the background.
    await waitForTopics([...topics.forTenant(TENANT), ...topics.forTenant(OTHER_TENANT), unattributedTopic]);
  });
  after(async () => {
    await seed.close();
    await ctx.close();
  });

  it('produces whole TelemetryPoints with key and headers, answering 2xx after the ack', async () => {
    const receivedAt = Date.parse('2026-11-24T16:18:29.123Z');
    const secondsDevice = await seed.device(TENANT, { decoder: { type: 'json', timestamp: { field: 'ts', unit: 's' } } });
    const msDevice = await seed.device(TENANT, { decoder: { type: 'json', timestamp: { field: 'ts', unit: 'ms' } } });
    const isoDevice = await seed.device(TENANT, { decoder: { type: 'json', timestamp: { field: 'meta.at', unit: 'iso8601' } } });
    const readingAt = '2026-11-24T16:10:00.250Z';
    const readingMs = Date.parse(readingAt);
    const sent = [
      { device, payload: '{"temperature":22.5,"humidity":65,"state":"running"}' },
      { device, payload: '{"door_open":true,"alarm":false,"fan":{"on":true}}' },
      { device, payload: '{"env":{"inside":{"temp":21.5,"unit":"C"},"outside":{"temp":-3}},"fw":"1.2.3"}' },
      { device, payload: '{"v":1,"readings":[1,2,3],"note":null,"extra":{}}' },
      { device: secondsDevice, payload: `{"ts":${readingMs / 1000},"v":1}` },
      { device: msDevice, payload: `{"ts":${readingMs},"v":2}` },
      { device: isoDevice, payload: `{"meta":{"at":"${readingAt}"},"v":3}` },
      { device: msDevice, payload: '{"ts":1,"v":4}' },
      { device, payload: Buffer.from('{"encoded":1}').toString('base64'), payload_encoding: 'base64' },
    ].map(({ device: id, payload, ...fields }) => ({ id: messageId(), device: id, event: publishEvent(id, payload, { publishReceivedAt: receivedAt, client_attrs: { tenant_id: TENANT }, ...fields }) }));
    for (const { event } of sent) {
      const response = await postEvent(app, event);
      assert.equal(response.statusCode, 204, response.body);
    }

    const records = byMessageId(await consumeRecords([rawTopic], sent.length));
    assert.equal(records.size, sent.length);
    const common = { schema: 'telemetry_point/v1', tenant_id: TENANT, protocol: 'mqtt', received_at: '2026-11-24T16:18:29.123Z' };
    const arrival = { timestamp: '2026-11-24T16:18:29.123Z', timestamp_source: 'received_at' };
    const none = { numeric_values: {}, string_values: {}, boolean_values: {}, ignored_fields: [] };
    const expected = [
      { ...common, ...arrival, ...none, numeric_values: { temperature: 22.5, humidity: 65 }, string_values: { state: 'running' } },
      { ...common, ...arrival, ...none, boolean_values: { door_open: true, alarm: false, 'fan.on': true } },
      {
        ...common,
        ...arrival,
        ...none,
        numeric_values: { 'env.inside.temp': 21.5, 'env.outside.temp': -3 },
        string_values: { 'env.inside.unit': 'C', fw: '1.2.3' },
      },
      { ...common, ...arrival, ...none, numeric_values: { v: 1 }, ignored_fields: ['readings', 'note', 'extra'] },
      { ...common, ...none, timestamp: readingAt, timestamp_source: 'payload', numeric_values: { ts: readingMs / 1000, v: 1 } },
      { ...common, ...none, timestamp: readingAt, timestamp_source: 'payload', numeric_values: { ts: readingMs, v: 2 } },
      { ...common, ...none, timestamp: readingAt, timestamp_source: 'payload', numeric_values: { v: 3 }, string_values: { 'meta.at': readingAt } },
      { ...common, ...none, timestamp: '2026-11-24T16:18:29.123Z', timestamp_source: 'received_at_fallback', numeric_values: { ts: 1, v: 4 } },
      { ...common, ...arrival, ...none, numeric_values: { encoded: 1 } },
    ];
    sent.forEach(({ event, device: id }, index) => {
      const found = records.get(event.id);
      assert.ok(found, `message ${index} was produced`);
      assert.deepEqual(found.value, { ...expected[index], device_id: id, message_id: event.id }, `message ${index}`);
      assert.equal(found.record.key, id);
      assert.deepEqual(found.record.headers, {
        tenant_id: TENANT,
        device_id: id,
        'content-type': 'application/json',
        schema: 'telemetry_point/v1',
      });
    });
    const order = Object.keys(records.get(sent[0]!.event.id)!.value);
    assert.deepEqual(order.slice(0, 11), [
      'schema', 'tenant_id', 'device_id', 'protocol', 'message_id', 'timestamp', 'received_at',
      'numeric_values', 'string_values', 'boolean_values', 'ignored_fields',
    ]);
  });

  it('dead-letters a TelemetryPoint larger than one produce request carries (record_too_large), answering 2xx', async () => {
    // Payloads up to 1 MiB allowed, produce requests capped at 512 KiB: a valid
    // payload of 200 strings of 4,000 bytes makes a TelemetryPoint of ~800 KB.
    const roomy = await ctx.app({}, { INGEST_MAX_PAYLOAD_BYTES: String(1024 * 1024), KAFKA_MAX_BATCH_BYTES: String(512 * 1024) });
    const payload = JSON.stringify(Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`s${i}`, 'x'.repeat(4000)])));
    // A device of the other tenant, whose dead-letter topic no other test here reads.
    const large = await seed.device(OTHER_TENANT);
    const event = publishEvent(large, payload);
    const response = await postEvent(roomy, event);
    assert.equal(response.statusCode, 204, response.body.slice(0, 200));
    const otherDlq = createTopicNames(ctx.config.kafka.topicPrefix).telemetryDlq(OTHER_TENANT);
    const found = byMessageId(await consumeRecords([otherDlq], 1)).get(event.id);
    assert.ok(found, 'dead-lettered');
    assert.equal(found.value.reason, 'record_too_large');
    assert.match(String(found.value.detail), /TelemetryPoint is too large/);
  });

  it('sends every poison message to a dead-letter topic with its reason, answering 2xx and never 500', async () => {
    const disabled = await seed.device(TENANT, { disabled: true });
    const otherTenantDevice = await seed.device(OTHER_TENANT);
    const unknown = '00000000-0000-4000-8000-000000000000';
    // Above the payload limit (256 KiB), below what makes the event itself too large to read.
    const tooLarge = `{"blob":"${'x'.repeat(300 * 1024)}"}`;
    const manyFields = JSON.stringify(Object.fromEntries(Array.from({ length: 40_000 }, (_, i) => [i.toString(36), 0])));
    const invalidUtf8 = Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]).toString('base64');
    const poison: { name: string; reason: string; topic: string; event: ReturnType<typeof publishEvent> }[] = [
      { name: 'invalid JSON', reason: 'invalid_json', topic: dlqTopic, event: publishEvent(device, '{"temperature":') },
      { name: 'JSON array', reason: 'not_an_object', topic: dlqTopic, event: publishEvent(device, '[1,2,3]') },
      { name: 'bare number', reason: 'not_an_object', topic: dlqTopic, event: publishEvent(device, '42') },
      { name: '300 KiB', reason: 'payload_too_large', topic: dlqTopic, event: publishEvent(device, tooLarge) },
      { name: '40,000 fields', reason: 'payload_too_large', topic: dlqTopic, event: publishEvent(device, manyFields) },
      { name: 'deep nesting', reason: 'too_deep', topic: dlqTopic, event: publishEvent(device, `${'{"a":'.repeat(50)}1${'}'.repeat(50)}`) },
      { name: 'invalid UTF-8 via base64', reason: 'invalid_utf8', topic: dlqTopic, event: publishEvent(device, invalidUtf8, { payload_encoding: 'base64' }) },
      { name: 'not base64', reason: 'invalid_base64', topic: dlqTopic, event: publishEvent(device, '{"a":1}', { payload_encoding: 'base64' }) },
      { name: 'key with a dot and unicode', reason: 'invalid_key', topic: dlqTopic, event: publishEvent(device, '{"temp.°C":21}') },
      { name: 'key with a control character', reason: 'invalid_key', topic: dlqTopic, event: publishEvent(device, '{"a\\u0007":1}') },
      { name: 'over-long key', reason: 'key_too_long', topic: dlqTopic, event: publishEvent(device, `{"${'k'.repeat(129)}":1}`) },
      { name: 'over-long string', reason: 'string_too_long', topic: dlqTopic, event: publishEvent(device, `{"s":"${'x'.repeat(4097)}"}`) },
      {
        name: 'topic of another device',
        reason: 'topic_mismatch',
        topic: dlqTopic,
        event: publishEvent(device, '{"v":1}', { topic: `devices/${otherTenantDevice}/telemetry` }),
      },
      { name: 'other topic', reason: 'topic_mismatch', topic: dlqTopic, event: publishEvent(device, '{"v":1}', { topic: `devices/${device}/status` }) },
      { name: 'username differs', reason: 'username_mismatch', topic: dlqTopic, event: publishEvent(device, '{"v":1}', { username: otherTenantDevice }) },
      {
        name: 'session of another tenant',
        reason: 'tenant_mismatch',
        topic: dlqTopic,
        event: publishEvent(device, '{"v":1}', { client_attrs: { tenant_id: OTHER_TENANT } }),
      },
      { name: 'disabled device', reason: 'device_disabled', topic: dlqTopic, event: publishEvent(disabled, '{"v":1}') },
      { name: 'unknown device', reason: 'unknown_device', topic: unattributedTopic, event: publishEvent(unknown, '{"v":1}') },
      { name: 'client id that is no device id', reason: 'unknown_device', topic: unattributedTopic, event: publishEvent('sensor-1', '{"v":1}') },
      { name: 'payload not a string', reason: 'invalid_event', topic: dlqTopic, event: publishEvent(device, '', { payload: { v: 1 } }) },
    ];
    for (const { name, event } of poison) {
      const response = await postEvent(app, event);
      assert.equal(response.statusCode, 204, `${name}: ${response.statusCode} ${response.body.slice(0, 200)}`);
    }

    const records = byMessageId(await consumeRecords([dlqTopic, unattributedTopic], poison.length));
    for (const { name, reason, topic, event } of poison) {
      const found = records.get(event.id);
      assert.ok(found, `${name}: dead-lettered`);
      assert.equal(found.value.reason, reason, `${name}: ${String(found.value.detail)}`);
      assert.equal(found.record.topic, topic, name);
      assert.equal(found.record.headers.reason, reason, name);
    }

    const invalidJson = records.get(poison[0]!.event.id)!;
    assert.ok(typeof invalidJson.value.detail === 'string' && invalidJson.value.detail.length > 0);
    assert.ok(typeof invalidJson.value.dead_lettered_at === 'string');
    const { detail: _detail, dead_lettered_at: _at, ...stable } = invalidJson.value;
    assert.deepEqual(stable, {
      schema: 'telemetry_dead_letter/v1',
      reason: 'invalid_json',
      tenant_id: TENANT,
      device_id: device,
      message_id: poison[0]!.event.id,
      clientid: device,
      username: device,
      topic: `devices/${device}/telemetry`,
      received_at: new Date(poison[0]!.event.publish_received_at).toISOString(),
      payload_encoding: 'plain',
      payload_base64: Buffer.from('{"temperature":').toString('base64'),
      payload_bytes: 15,
      payload_truncated: false,
    });
    assert.deepEqual(invalidJson.record.headers, {
      reason: 'invalid_json',
      'content-type': 'application/json',
      schema: 'telemetry_dead_letter/v1',
      tenant_id: TENANT,
      device_id: device,
    });
    assert.equal(invalidJson.record.key, device);

    const big = records.get(poison[3]!.event.id)!.value;
    assert.deepEqual([big.payload_bytes, big.payload_truncated], [Buffer.byteLength(tooLarge), true]);
    assert.equal(Buffer.from(String(big.payload_base64), 'base64').length, 256 * 1024);
    assert.equal(records.get(poison[6]!.event.id)!.value.payload_base64, invalidUtf8, 'the original bytes, not a replacement');
    const unattributed = records.get(poison[17]!.event.id)!;
    assert.deepEqual([unattributed.value.tenant_id, unattributed.value.device_id, unattributed.record.key], [null, null, unknown]);
    assert.equal(unattributed.record.headers.tenant_id, undefined);

    const raw = await consumeRecords([rawTopic], 1_000_000, { timeoutMs: 3000 });
    const poisonIds = new Set(poison.map((p) => p.event.id));
    assert.deepEqual(raw.filter((r) => poisonIds.has(String((JSON.parse(r.value ?? '{}') as { message_id?: string }).message_id))), []);
  });

  it('names the field limit for 100,000 small fields when the payload limit allows them', async () => {
    const roomy = await ctx.app({}, { INGEST_MAX_PAYLOAD_BYTES: String(4 * 1024 * 1024) });
    const event = publishEvent(device, JSON.stringify(Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [i.toString(36), 0]))));
    assert.equal((await postEvent(roomy, event)).statusCode, 204);
    const records = byMessageId(await consumeRecords([dlqTopic], 1_000_000, { timeoutMs: 4000 }));
    assert.equal(records.get(event.id)?.value.reason, 'too_many_fields');
  });

  it('keeps repeated deliveries of one message out of telemetry.raw and the dead-letter topic, also when they arrive at the same time', async () => {
    const repeated = publishEvent(device, '{"repeat":1}');
    const concurrent = publishEvent(device, '{"repeat":2}');
    assert.equal((await postEvent(app, repeated)).statusCode, 204);
    assert.equal((await postEvent(app, repeated)).statusCode, 204);
    const answers = await Promise.all([1, 2, 3].map(() => postEvent(app, concurrent)));
    assert.deepEqual(answers.map((a) => a.statusCode), [204, 204, 204]);
    assert.equal((await postEvent(app, { ...repeated, flags: { dup: true, retain: false } })).statusCode, 204);

    // A dead letter is delivered once too.
    const poison = publishEvent(device, '[1,2]');
    assert.equal((await postEvent(app, poison)).statusCode, 204);
    assert.equal((await postEvent(app, poison)).statusCode, 204);

    const raw = await consumeRecords([rawTopic], 1_000_000, { timeoutMs: 4000 });
    const ids = raw.map((r) => (JSON.parse(r.value ?? '{}') as { message_id: string }).message_id);
    assert.equal(ids.filter((id) => id === repeated.id).length, 1);
    assert.equal(ids.filter((id) => id === concurrent.id).length, 1);
    const dead = await consumeRecords([dlqTopic], 1_000_000, { timeoutMs: 4000 });
    const deadIds = dead.map((r) => (JSON.parse(r.value ?? '{}') as { message_id: string }).message_id);
    assert.equal(deadIds.filter((id) => id === poison.id).length, 1);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_telemetry_deduplicated_total [1-9]/m);
  });

  it('counts accepted, dead-lettered by reason, batch sizes and produce latency', async () => {
    const counted = await ctx.app();
    const stranger = 'not-a-device';
    assert.equal((await postEvent(counted, publishEvent(device, '{"counted":1}'))).statusCode, 204);
    assert.equal((await postEvent(counted, publishEvent(device, '{"counted":'))).statusCode, 204);
    for (let i = 0; i < 2; i++) assert.equal((await postEvent(counted, publishEvent(stranger, '{"v":1}'))).statusCode, 204);
    const metrics = (await counted.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_telemetry_accepted_total 1$/m);
    assert.match(metrics, /^devicelink_telemetry_dead_lettered_total\{reason="invalid_json"\} 1$/m);
    assert.match(metrics, /^devicelink_telemetry_dead_lettered_total\{reason="unknown_device"\} 2$/m);
    assert.match(metrics, /^devicelink_telemetry_produce_batch_records_count [1-9]/m);
    assert.match(metrics, /^devicelink_telemetry_produce_duration_seconds_count\{outcome="acked"\} [1-9]/m);
    assert.match(metrics, /^devicelink_emqx_events_total\{event="message.publish",outcome="handled"\} 4$/m);
  });

  it('produces large records in batches the broker accepts: 40 events of 200 KiB for one device, each once', async () => {
    // 50 strings of 4,000 bytes: about 200 KiB of payload, and a TelemetryPoint as large.
    const payload = JSON.stringify(Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`s${i}`, 'v'.repeat(4000)])));
    const events = Array.from({ length: 40 }, () => publishEvent(device, payload));
    const answers = await Promise.all(events.map((event) => postEvent(app, event)));
    assert.deepEqual(new Set(answers.map((answer) => answer.statusCode)), new Set([204]));
    const ids = new Set(events.map((event) => event.id));
    const raw = await consumeRecords([rawTopic], 1_000_000, { timeoutMs: 6000 });
    const copies = raw.map((r) => (JSON.parse(r.value ?? '{}') as { message_id: string }).message_id).filter((id) => ids.has(id));
    assert.equal(copies.length, 40);
    assert.equal(new Set(copies).size, 40);
  });

  it('produces anyway when Redis is down (at-least-once over refusing)', async () => {
    const noRedis = await ctx.app({}, { REDIS_URL: 'redis://127.0.0.1:1/0' });
    const event = publishEvent(device, '{"redis":"down"}');
    assert.equal((await postEvent(noRedis, event)).statusCode, 204);
    const raw = await consumeRecords([rawTopic], 1_000_000, { timeoutMs: 4000 });
    assert.ok(raw.some((r) => r.value?.includes(event.id)));
  });

  it('answers 503 when the device cannot be looked up (Postgres down, nothing cached)', async () => {
    const noPostgres = await ctx.app({}, { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
    const response = await postEvent(noPostgres, publishEvent(device, '{"v":1}'));
    assert.equal(response.statusCode, 503);
    assert.deepEqual(response.json(), { result: 'retry', reason: 'registry_unavailable' });
  });
});

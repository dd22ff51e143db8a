import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { createTopicNames } from '../../src/lib/topics.js';
import { PRODUCT_PAGE_PAYLOAD as PAYLOAD } from '../../dev/local/commands.js';
import { adminClient, type AdminClient } from '../helpers/admin.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { consumeRecords } from '../helpers/kafka.js';
import { startMqttStack, type MqttStack } from '../helpers/mqtt-stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Devices as the product page has them connect: a real MQTT client (mqtt.js)
 * through the EMQX simulation, which asks the service exactly what EMQX
 * with deploy/emqx/emqx.conf asks, down to the records a consumer reads from
 * Kafka. Tenant, devices and keys come from the admin API.
 */


interface Status {
  online: boolean;
  connected: boolean;
  disconnect_reason: string | null;
}

describe('MQTT devices through the EMQX simulation', () => {
  let ctx: TestContext;
  let stack: MqttStack;
  let admin: AdminClient;
  let tenantId: string;
  let deviceId: string;
  let otherDeviceId: string;
  let key: string;
  let otherKey: string;

  const issueKey = async (device: string) => {
    const issued = await admin.post(`/v1/devices/${device}/keys`, { label: 'e2e' });
    assert.equal(issued.statusCode, 201, issued.body);
    return issued.json<{ id: string; key: string }>();
  };
  const status = async (device: string) => (await admin.get(`/v1/devices/${device}/status`)).json<Status>();
  const connectDevice = (device: string, password: string) => stack.connect({ clientId: device, username: device, password });
  /** CONNACK's return code of a refused CONNECT. */
  const refusal = async (options: { clientId: string; username: string; password: string }) => {
    const error = await stack.connect(options).then(
      () => assert.fail(`${options.clientId} was let in`),
      (failure: unknown) => failure as { code?: number },
    );
    return error.code;
  };

  before(async () => {
    ctx = await createTestContext();
    stack = await startMqttStack(ctx);
    admin = adminClient(stack.app);
    tenantId = `mqtt-${ctx.tag}`;
    assert.equal((await admin.post('/v1/tenants', { id: tenantId, name: 'MQTT end to end' })).statusCode, 201);
    const devices: string[] = [];
    for (const name of ['boiler-1', 'boiler-2']) {
      const device = await admin.post(`/v1/tenants/${tenantId}/devices`, { name });
      assert.equal(device.statusCode, 201, device.body);
      devices.push(device.json<{ id: string }>().id);
    }
    [deviceId, otherDeviceId] = devices as [string, string];
    key = (await issueKey(deviceId)).key;
    otherKey = (await issueKey(otherDeviceId)).key;
  });

  after(async () => {
    await stack.close();
    await ctx.close();
  });

  it('lets a device in with its key and refuses a wrong key, another device key, and a client id other than the username', async () => {
    const client = await connectDevice(deviceId, key);
    assert.equal(client.connected, true);
    await client.endAsync();

    // MQTT 3.1.1's "not authorized" (EMQX maps its 0x87 to 5).
    assert.equal(await refusal({ clientId: deviceId, username: deviceId, password: `${key}x` }), 5);
    assert.equal(await refusal({ clientId: deviceId, username: deviceId, password: otherKey }), 5);
    assert.equal(await refusal({ clientId: otherDeviceId, username: deviceId, password: key }), 5);
  });

  it('puts the product page payload into telemetry.raw as a TelemetryPoint, ignores a publish to another device topic, and turns the device online', async () => {
    const client = await connectDevice(deviceId, key);
    // Denied (deny_action = ignore): acknowledged, the session stays, nothing is routed.
    await client.publishAsync(`devices/${otherDeviceId}/telemetry`, '{"spoofed":1}', { qos: 1 });
    assert.equal(client.connected, true);
    const sentAt = Date.now();
    await client.publishAsync(`devices/${deviceId}/telemetry`, PAYLOAD, { qos: 1 });

    const topic = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(tenantId);
    const records = await consumeRecords([topic], 1, { settleMs: 500 });
    assert.equal(records.length, 1, `one record on ${topic}: ${JSON.stringify(records.map((record) => record.value))}`);
    const [record] = records;
    assert.equal(record?.key, deviceId);
    const point = JSON.parse(record?.value ?? 'null') as Record<string, unknown>;
    assert.equal(point.schema, 'telemetry_point/v1');
    assert.equal(point.tenant_id, tenantId);
    assert.equal(point.device_id, deviceId);
    assert.equal(point.protocol, 'mqtt');
    assert.match(String(point.message_id), /^[0-9A-F]{32}$/);
    assert.ok(Date.parse(String(point.received_at)) >= sentAt - 1000, 'received_at is the broker arrival time');
    assert.deepEqual(point.numeric_values, { temperature: 22.5, humidity: 65 });
    assert.deepEqual(point.string_values, { state: 'running' });
    assert.deepEqual(point.boolean_values, {});

    await waitFor(async () => (await status(deviceId)).online, 5000);
    assert.equal((await status(otherDeviceId)).online, false);
    await client.endAsync();
  });

  it('refuses subscribing to every device commands, and allows the device its own', async () => {
    const client = await connectDevice(deviceId, key);
    // SUBACK's failure code; mqtt.js rejects the subscription with it.
    await assert.rejects(client.subscribeAsync('devices/+/commands', { qos: 1 }), (error: { packet?: { granted?: number[] } }) => {
      assert.deepEqual(error.packet?.granted, [128]);
      return true;
    });
    const [granted] = await client.subscribeAsync(`devices/${deviceId}/commands`, { qos: 1 });
    assert.equal(granted?.qos, 1);
    await client.endAsync();
  });

  it('refuses a second connection with a live client id and keeps the first', async () => {
    const first = await connectDevice(deviceId, key);
    let firstClosed = false;
    first.on('close', () => {
      firstClosed = true;
    });
    // The service knows the session is live once the connected event reached it.
    await waitFor(async () => (await status(deviceId)).connected, 5000);

    assert.equal(await refusal({ clientId: deviceId, username: deviceId, password: key }), 5);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(firstClosed, false, 'the first session survives');
    await first.publishAsync(`devices/${deviceId}/telemetry`, '{"still":"here"}', { qos: 1 });
    assert.equal(first.connected, true);
    await first.endAsync();
    await waitFor(async () => !(await status(deviceId)).connected, 5000);
  });

  it('delivers a command created over the admin API to the subscribed device, which reaches acked', async () => {
    const client = await connectDevice(otherDeviceId, otherKey);
    const received = new Promise<Record<string, unknown>>((resolve) =>
      client.once('message', (_topic, payload) => resolve(JSON.parse(payload.toString()) as Record<string, unknown>)),
    );
    await client.subscribeAsync(`devices/${otherDeviceId}/commands`, { qos: 1 });
    const created = await admin.post(`/v1/devices/${otherDeviceId}/commands`, { name: 'reboot', params: { delay_s: 5 } });
    assert.equal(created.statusCode, 202, created.body);
    const commandId = created.json<{ id: string }>().id;
    const command = await received;
    assert.equal(command.command_id, commandId);
    assert.equal(command.name, 'reboot');
    assert.deepEqual(command.params, { delay_s: 5 });
    // mqtt.js acknowledged it (QoS 1): the broker's message.acked moves the command on.
    await waitFor(async () => (await admin.get(`/v1/devices/${otherDeviceId}/commands/${commandId}`)).json<{ state: string }>().state === 'acked', 5000);
    await client.endAsync();
  });

  it('disconnects the live session when its key is revoked', async () => {
    const { id: keyId, key: revocable } = await issueKey(deviceId);
    const client: MqttClient = await connectDevice(deviceId, revocable);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await waitFor(async () => (await status(deviceId)).connected, 5000);

    assert.equal((await admin.delete(`/v1/devices/${deviceId}/keys/${keyId}`)).statusCode, 204);
    await closed;
    await waitFor(async () => (await status(deviceId)).disconnect_reason === 'kicked', 5000);
    assert.equal(await refusal({ clientId: deviceId, username: deviceId, password: revocable }), 5);
  });
});

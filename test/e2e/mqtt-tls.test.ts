import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createTopicNames } from '../../src/lib/topics.js';
import { deviceCommands, PRODUCT_PAGE_PAYLOAD } from '../../dev/local/commands.js';
import { ensureDevelopmentCertificates, type DevelopmentCertificates } from '../../dev/local/tls.js';
import { adminClient, type AdminClient } from '../helpers/admin.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { TEST_ADMIN_TOKEN } from '../helpers/env.js';
import { consumeRecords } from '../helpers/kafka.js';
import { startMqttStack, type MqttStack } from '../helpers/mqtt-stack.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);
const mosquittoPub = await run('sh', ['-c', 'command -v mosquitto_pub']).then(
  () => true,
  () => false,
);

/**
 * The product page's path, over TLS: a device connects to 8883 verifying the
 * server with the development CA (deploy/emqx/dev-certs.sh, as `npm run
 * local` and the compose stack make it), publishes the page's payload, and a
 * consumer reads the TelemetryPoint back from Kafka; the device turns online.
 */
describe('MQTT over TLS with the development CA', () => {
  let ctx: TestContext;
  let stack: MqttStack;
  let admin: AdminClient;
  let certificates: DevelopmentCertificates;
  let directory: string;
  let tenantId: string;

  const newDevice = async (name: string) => {
    const device = await admin.post(`/v1/tenants/${tenantId}/devices`, { name });
    assert.equal(device.statusCode, 201, device.body);
    const id = device.json<{ id: string }>().id;
    const issued = await admin.post(`/v1/devices/${id}/keys`, { label: 'tls' });
    assert.equal(issued.statusCode, 201, issued.body);
    return { id, key: issued.json<{ key: string }>().key };
  };
  const online = async (device: string) => (await admin.get(`/v1/devices/${device}/status`)).json<{ online: boolean }>().online;
  /** The TelemetryPoints of one device read back from telemetry.raw. */
  const pointsOf = async (device: string, count: number) => {
    const topic = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(tenantId);
    const records = await consumeRecords([topic], count, { settleMs: 500 });
    return records.filter((record) => record.key === device).map((record) => JSON.parse(record.value ?? 'null') as Record<string, unknown>);
  };

  before(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'dlm-e2e-tls-'));
    certificates = await ensureDevelopmentCertificates(directory);
    ctx = await createTestContext();
    stack = await startMqttStack(ctx, { tls: { cert: certificates.cert, key: certificates.key } });
    admin = adminClient(stack.app);
    tenantId = `tls-${ctx.tag}`;
    assert.equal((await admin.post('/v1/tenants', { id: tenantId, name: 'MQTT over TLS' })).statusCode, 201);
  });

  after(async () => {
    await stack?.close();
    await ctx?.close();
    await rm(directory, { recursive: true, force: true });
  });

  it('a device verifying the server with the CA publishes the product page payload: a TelemetryPoint on telemetry.raw, and the device online', async () => {
    const device = await newDevice('boiler-tls');
    const client = await stack.connect({ clientId: device.id, username: device.id, password: device.key, ca: certificates.ca }, stack.mqttsUrl ?? undefined);
    await client.publishAsync(`devices/${device.id}/telemetry`, PRODUCT_PAGE_PAYLOAD, { qos: 1 });
    await client.endAsync();

    const [point] = await pointsOf(device.id, 1);
    assert.ok(point, 'a TelemetryPoint of the device');
    assert.equal(point.schema, 'telemetry_point/v1');
    assert.equal(point.tenant_id, tenantId);
    assert.deepEqual(point.numeric_values, { temperature: 22.5, humidity: 65 });
    assert.deepEqual(point.string_values, { state: 'running' });
    await waitFor(() => online(device.id), 5000);
  });

  it('refuses a client that does not trust the development CA', async () => {
    const device = await newDevice('boiler-untrusting');
    await assert.rejects(stack.connect({ clientId: device.id, username: device.id, password: device.key, connectTimeout: 2000 }, stack.mqttsUrl ?? undefined), /self[- ]signed|unable to verify|certificate/i);
  });

  it('the mosquitto_pub line `npm run local` prints, run as printed, lands a TelemetryPoint and turns the device online', { skip: mosquittoPub ? false : 'mosquitto_pub is not installed (apt-get install mosquitto-clients)' }, async () => {
    const device = await newDevice('boiler-mosquitto');
    const printed = deviceCommands({
      host: '127.0.0.1',
      mqttPort: Number(new URL(stack.mqttUrl).port),
      mqttsPort: Number(new URL(stack.mqttsUrl ?? '').port),
      caFile: certificates.caFile,
      deviceId: device.id,
      key: device.key,
      serviceUrl: 'http://127.0.0.1:8080',
      adminToken: TEST_ADMIN_TOKEN,
    });
    assert.match(printed.publishTls, /^mosquitto_pub --cafile \S+ -h 127\.0\.0\.1 -p \d+ /);
    await run('sh', ['-c', printed.publishTls], { timeout: 15_000 });
    const [point] = await pointsOf(device.id, 2);
    assert.ok(point, 'a TelemetryPoint of the device');
    assert.deepEqual(point.numeric_values, { temperature: 22.5, humidity: 65 });
    await waitFor(() => online(device.id), 5000);
  });
});

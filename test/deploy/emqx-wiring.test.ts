import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTopicNames } from '../../src/lib/topics.js';
import { adminClient } from '../helpers/admin.js';
import { waitForCommand, type CommandBody } from '../helpers/commands.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { renderEmqxConfig } from '../../dev/emqx-sim/emqx-config.js';
import { BASIC_COLUMNS, EVENT_COLUMNS, pubProps, PUBLISH_PROPERTIES, REST_PUBLISHER, type EventName } from '../../dev/emqx-sim/emqx-facts.js';
import type { EmqxSim, PublishedMessage } from '../../dev/emqx-sim/emqx-sim.js';
import { emqxEnv, startTestEmqx } from '../helpers/emqx.js';
import {
  AUTHN_PLACEHOLDERS,
  AUTHZ_PLACEHOLDERS,
  parseRuleSql,
  renderAuthRequest,
  renderHttpAction,
  ruleSelects,
  selectOutput,
  type RenderedRequest,
  type Values,
} from '../../dev/emqx-sim/templates.js';
import { TEST_HOOK_TOKEN } from '../helpers/env.js';
import { hoconArray, hoconObject, hoconString, type HoconObject } from '../../dev/emqx-sim/hocon.js';
import { consumeRecords } from '../helpers/kafka.js';

/**
 * The shipped EMQX configuration against the running service: every request
 * EMQX would send — rendered from deploy/emqx/emqx.conf after the container
 * entrypoint put this deployment's hook token in — for a device registered
 * through the admin API with a key issued there, and what a downstream
 * consumer then reads from Kafka (telemetry, dead letters, device events).
 * If the configuration and the service drift apart, this fails.
 */

const PEER = '203.0.113.7';

/** An event with columns EMQX 5.8 gives it (emqx-facts.ts), and no others. */
function emqxEvent(name: EventName, columns: Values): Values {
  const known = new Set<string>([...BASIC_COLUMNS, ...EVENT_COLUMNS[name]]);
  for (const column of Object.keys(columns)) assert.ok(known.has(column), `EMQX 5.8 gives ${name} no column ${column}`);
  return { ...columns, event: name };
}

describe('deploy/emqx/emqx.conf against the service', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let config: HoconObject;
  let tenantId: string;
  let deviceId: string;
  let otherDeviceId: string;
  let key: string;

  const send = (request: RenderedRequest) =>
    app.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.body });

  /** What EMQX's authenticator sends for a CONNECT with these fields (§A). */
  const authnRequest = (values: Values) => renderAuthRequest(hoconObject(config, 'authentication.0'), values, AUTHN_PLACEHOLDERS);

  /** What EMQX's HTTP authorization source sends for one check (§B: qos and retain as strings). */
  const authzRequest = (action: 'publish' | 'subscribe', topic: string) =>
    renderAuthRequest(
      hoconObject(config, 'authorization.sources.0'),
      { clientid: deviceId, username: deviceId, peerhost: PEER, topic, action, qos: '1', retain: 'false' },
      AUTHZ_PLACEHOLDERS,
    );

  /** The request the rule that selects this event sends through its HTTP action. */
  const eventRequest = (event: Values) => {
    const matching = Object.entries(hoconObject(config, 'rule_engine.rules')).filter(([id]) => {
      try {
        selectOutput(parseRuleSql(hoconString(config, `rule_engine.rules.${id}.sql`)), event);
        return true;
      } catch {
        return false;
      }
    });
    assert.equal(matching.length, 1, `exactly one rule selects ${String(event.event)}`);
    const [id] = matching[0] as [string, unknown];
    const output = selectOutput(parseRuleSql(hoconString(config, `rule_engine.rules.${id}.sql`)), event);
    const [action] = hoconArray(config, `rule_engine.rules.${id}.actions`);
    assert.equal(typeof action, 'string');
    return renderHttpAction(config, action as string, output);
  };

  /** A message.publish event with the columns EMQX 5.8 gives it. */
  const publishEvent = (payload: Buffer, receivedAt: number) =>
    emqxEvent('message.publish', {
      id: randomBytes(16).toString('hex').toUpperCase(),
      clientid: deviceId,
      username: deviceId,
      payload,
      peerhost: PEER,
      peername: `${PEER}:51234`,
      topic: `devices/${deviceId}/telemetry`,
      qos: 1,
      flags: { dup: false, retain: false },
      pub_props: pubProps({}),
      publish_received_at: receivedAt,
      client_attrs: { tenant_id: tenantId, device_id: deviceId },
      timestamp: receivedAt + 1,
      node: 'emqx@emqx',
    });

  const connectedAt = Date.now() - 1000;
  const connectionEvent = (event: 'client.connected' | 'client.disconnected') => {
    const common = {
      clientid: deviceId,
      username: deviceId,
      peername: `${PEER}:51234`,
      sockname: '172.18.0.5:8883',
      proto_name: 'MQTT',
      proto_ver: 5,
      connected_at: connectedAt,
      client_attrs: { tenant_id: tenantId, device_id: deviceId },
      timestamp: Date.now(),
      node: 'emqx@emqx',
    };
    return event === 'client.connected'
      ? emqxEvent(event, { ...common, mountpoint: undefined, keepalive: 60, clean_start: true, receive_maximum: 32, expiry_interval: 0, is_bridge: false, conn_props: {} })
      : emqxEvent(event, { ...common, reason: 'normal', disconnected_at: connectedAt + 500, disconn_props: {} });
  };

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
    // The EMQX container's start-up, with this test app's hook token.
    ({ config } = await renderEmqxConfig({
      DEVICE_LINK_HOOK_TOKEN: TEST_HOOK_TOKEN,
      DEVICE_LINK_API_KEY: ctx.config.emqx.apiKey,
      DEVICE_LINK_API_SECRET: ctx.config.emqx.apiSecret,
    }));
    const admin = adminClient(app);
    tenantId = `wire-${ctx.tag}`;
    const tenant = await admin.post('/v1/tenants', { id: tenantId, name: 'EMQX wiring' });
    assert.equal(tenant.statusCode, 201, tenant.body);
    const device = await admin.post(`/v1/tenants/${tenantId}/devices`, { name: 'boiler-1' });
    assert.equal(device.statusCode, 201, device.body);
    deviceId = device.json<{ id: string }>().id;
    const other = await admin.post(`/v1/tenants/${tenantId}/devices`, { name: 'boiler-2' });
    otherDeviceId = other.json<{ id: string }>().id;
    const issued = await admin.post(`/v1/devices/${deviceId}/keys`, { label: 'wiring' });
    assert.equal(issued.statusCode, 201, issued.body);
    key = issued.json<{ key: string }>().key;
  });

  after(async () => {
    await ctx.close();
  });

  it('authenticator: allows the device with its key and carries the ACL and client_attrs', async () => {
    const response = await send(authnRequest({ clientid: deviceId, username: deviceId, password: key, peerhost: PEER }));
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^application\/json/);
    assert.deepEqual(response.json(), {
      result: 'allow',
      is_superuser: false,
      client_attrs: { tenant_id: tenantId, device_id: deviceId },
      acl: [
        { permission: 'allow', action: 'publish', topic: `devices/${deviceId}/telemetry` },
        { permission: 'allow', action: 'subscribe', topic: `devices/${deviceId}/commands` },
        { permission: 'deny', action: 'all', topic: '#' },
      ],
    });
  });

  it('authenticator: denies a wrong key, another device and a CONNECT without credentials', async () => {
    const refusals: Values[] = [
      { clientid: deviceId, username: deviceId, password: `${key}x`, peerhost: PEER },
      { clientid: otherDeviceId, username: otherDeviceId, password: key, peerhost: PEER },
      // EMQX renders an absent username and password as "".
      { clientid: deviceId, peerhost: PEER },
    ];
    for (const values of refusals) {
      const response = await send(authnRequest(values));
      assert.equal(response.statusCode, 200);
      assert.equal(response.json<{ result: string }>().result, 'deny', JSON.stringify({ ...values, password: '…' }));
    }
  });

  it('without the rendered hook token the service answers 401, which EMQX treats as ignore (refused)', async () => {
    const request = authnRequest({ clientid: deviceId, username: deviceId, password: key, peerhost: PEER });
    const response = await send({ ...request, headers: { ...request.headers, authorization: 'Bearer @DEVICE_LINK_HOOK_TOKEN@' } });
    assert.equal(response.statusCode, 401);
  });

  it('authorization source: allows the device its own topics and denies everything else', async () => {
    const cases: Array<['publish' | 'subscribe', string, 'allow' | 'deny']> = [
      ['publish', `devices/${deviceId}/telemetry`, 'allow'],
      ['subscribe', `devices/${deviceId}/commands`, 'allow'],
      ['publish', `devices/${otherDeviceId}/telemetry`, 'deny'],
      ['subscribe', `devices/${otherDeviceId}/commands`, 'deny'],
      ['subscribe', 'devices/+/commands', 'deny'],
      ['subscribe', '#', 'deny'],
      ['publish', `devices/${deviceId}/commands`, 'deny'],
      ['subscribe', `devices/${deviceId}/telemetry`, 'deny'],
      ['subscribe', '$SYS/brokers', 'deny'],
      // Replies are off unless COMMAND_REPLIES=enabled.
      ['publish', `devices/${deviceId}/command-replies`, 'deny'],
    ];
    for (const [action, topic, expected] of cases) {
      const response = await send(authzRequest(action, topic));
      assert.equal(response.statusCode, 200);
      assert.equal(response.json<{ result: string }>().result, expected, `${action} ${topic}`);
    }
  });

  it('telemetry rule: the product page example arrives in telemetry.raw as a TelemetryPoint', async () => {
    const receivedAt = Date.now();
    const event = publishEvent(Buffer.from('{"temperature":22.5,"humidity":65,"state":"running"}'), receivedAt);
    const request = eventRequest(event);
    assert.equal(request.url, '/emqx/events');
    const response = await send(request);
    assert.ok(response.statusCode >= 200 && response.statusCode < 300, `${response.statusCode} ${response.body}`);

    const topic = createTopicNames(ctx.config.kafka.topicPrefix).telemetryRaw(tenantId);
    const [record] = await consumeRecords([topic], 1);
    assert.ok(record, `a record on ${topic}`);
    assert.equal(record.key, deviceId);
    const point = JSON.parse(record.value ?? 'null') as Record<string, unknown>;
    assert.deepEqual(
      {
        schema: point.schema,
        tenant_id: point.tenant_id,
        device_id: point.device_id,
        protocol: point.protocol,
        message_id: point.message_id,
        received_at: point.received_at,
        numeric_values: point.numeric_values,
        string_values: point.string_values,
        boolean_values: point.boolean_values,
        ignored_fields: point.ignored_fields,
      },
      {
        schema: 'telemetry_point/v1',
        tenant_id: tenantId,
        device_id: deviceId,
        protocol: 'mqtt',
        message_id: event.id,
        received_at: new Date(receivedAt).toISOString(),
        numeric_values: { temperature: 22.5, humidity: 65 },
        string_values: { state: 'running' },
        boolean_values: {},
        ignored_fields: [],
      },
    );
  });

  it('telemetry rule: a binary payload reaches the dead-letter topic byte for byte', async () => {
    // Not UTF-8: without base64_encode in the rule EMQX would have replaced these bytes.
    const payload = Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x80, 0x7d]);
    const event = publishEvent(payload, Date.now());
    const response = await send(eventRequest(event));
    assert.ok(response.statusCode >= 200 && response.statusCode < 300, `${response.statusCode} ${response.body}`);
    const topic = createTopicNames(ctx.config.kafka.topicPrefix).telemetryDlq(tenantId);
    const records = await consumeRecords([topic], 1);
    const letter = records.map((record) => JSON.parse(record.value ?? 'null') as Record<string, unknown>).find((value) => value.message_id === event.id);
    assert.ok(letter, `a dead letter for ${event.id} on ${topic}`);
    assert.equal(letter.device_id, deviceId);
    assert.equal(letter.payload_base64, payload.toString('base64'));
  });

  it('connect and disconnect rules: session state, device events and liveness follow the events', async () => {
    const connected = await send(eventRequest(connectionEvent('client.connected')));
    assert.ok(connected.statusCode >= 200 && connected.statusCode < 300, `${connected.statusCode} ${connected.body}`);
    // With the device's session recorded as live, a second CONNECT needs EMQX to
    // confirm it; this test has no EMQX to ask, so the answer is not "allow".
    const second = await send(authnRequest({ clientid: deviceId, username: deviceId, password: key, peerhost: PEER }));
    assert.notEqual(second.json<{ result: string }>().result, 'allow');

    const disconnected = await send(eventRequest(connectionEvent('client.disconnected')));
    assert.ok(disconnected.statusCode >= 200 && disconnected.statusCode < 300, `${disconnected.statusCode} ${disconnected.body}`);
    const again = await send(authnRequest({ clientid: deviceId, username: deviceId, password: key, peerhost: PEER }));
    assert.equal(again.json<{ result: string }>().result, 'allow');

    // Liveness: online from the telemetry above, connected and disconnected from these events.
    const topic = createTopicNames(ctx.config.kafka.topicPrefix).deviceEvents(tenantId);
    const records = await consumeRecords([topic], 3);
    const types = records
      .map((record) => JSON.parse(record.value ?? 'null') as { type?: string; device_id?: string })
      .filter((value) => value.device_id === deviceId)
      .map((value) => value.type);
    assert.deepEqual(new Set(types), new Set(['online', 'connected', 'disconnected']), `device events on ${topic}`);
    const status = await adminClient(app).get(`/v1/devices/${deviceId}/status`);
    assert.equal(status.json<{ online: boolean }>().online, true);
  });
});

/**
 * The command rules of deploy/emqx/emqx.conf against the service: EMQX's
 * delivery events for a command the service published, rendered through the
 * rules and the HTTP action as EMQX renders them, move the command; the
 * subscribe event sends what waited; with replies on, the replies rule's
 * request settles the command.
 */
describe('deploy/emqx/emqx.conf command rules against the service', () => {
  let ctx: TestContext;
  let emqx: EmqxSim;
  let app: FastifyInstance;
  let config: HoconObject;
  let deviceId: string;

  const send = (request: RenderedRequest) =>
    app.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.body });

  /** The request of the one rule that selects this event (the replies rule counts although it ships disabled). */
  const eventRequest = (event: Values) => {
    const matching = Object.keys(hoconObject(config, 'rule_engine.rules')).filter((id) =>
      ruleSelects(parseRuleSql(hoconString(config, `rule_engine.rules.${id}.sql`)), event),
    );
    assert.equal(matching.length, 1, `exactly one rule selects ${String(event.event)} on ${String(event.topic)}`);
    const id = matching[0] as string;
    const output = selectOutput(parseRuleSql(hoconString(config, `rule_engine.rules.${id}.sql`)), event);
    const [action] = hoconArray(config, `rule_engine.rules.${id}.actions`);
    return renderHttpAction(config, action as string, output);
  };

  /** A delivery event with every column EMQX 5.8 gives it, for a message the service published. */
  const deliveryEvent = (name: EventName, message: PublishedMessage, extra: Values = {}) => {
    const given = message.body.properties as Record<string, unknown>;
    const properties = Object.fromEntries(Object.entries(given).map(([field, value]) => [PUBLISH_PROPERTIES[field] ?? field, value]));
    return emqxEvent(name, {
      id: message.id,
      from_clientid: REST_PUBLISHER,
      from_username: undefined,
      clientid: deviceId,
      username: deviceId,
      payload: Buffer.from(String(message.body.payload)),
      peerhost: PEER,
      peername: `${PEER}:51234`,
      topic: message.topic,
      qos: 1,
      flags: { dup: false, retain: false },
      pub_props: pubProps(properties),
      publish_received_at: Date.now(),
      timestamp: Date.now(),
      node: 'emqx@emqx',
      ...extra,
    });
  };

  const command = async (name: string) => {
    const response = await adminClient(app).post(`/v1/devices/${deviceId}/commands`, { name, params: { via: 'rules' } });
    assert.equal(response.statusCode, 202, response.body);
    return response.json<CommandBody>();
  };
  const published = (commandId: string) =>
    emqx.published.find((p) => p.status === 200 && (JSON.parse(String(p.body.payload)) as { command_id: string }).command_id === commandId);

  before(async () => {
    emqx = await startTestEmqx();
    ctx = await createTestContext({ ...emqxEnv(emqx), COMMANDS_POLL_INTERVAL_MS: '100', COMMAND_REPLIES: 'enabled' });
    app = await ctx.app();
    ({ config } = await renderEmqxConfig({
      DEVICE_LINK_HOOK_TOKEN: TEST_HOOK_TOKEN,
      DEVICE_LINK_API_KEY: ctx.config.emqx.apiKey,
      DEVICE_LINK_API_SECRET: ctx.config.emqx.apiSecret,
    }));
    const admin = adminClient(app);
    assert.equal((await admin.post('/v1/tenants', { id: `cmd-${ctx.tag}`, name: 'Commands' })).statusCode, 201);
    deviceId = (await admin.post(`/v1/tenants/cmd-${ctx.tag}/devices`, { name: 'valve' })).json<{ id: string }>().id;
  });
  after(async () => {
    await ctx.close();
    await emqx.close();
  });

  it('session.subscribed sends what waited; delivered and acked move the command; message.dropped changes nothing', async () => {
    const admin = adminClient(app);
    const waiting = await command('open');
    const parked = await waitForCommand(admin, deviceId, waiting.id, (c) => c.last_error === 'no_subscriber');
    const dropped = emqx.published.find((p) => p.status === 202 && p.topic === `devices/${deviceId}/commands`);
    assert.ok(dropped);
    const noSubscriber = await send(
      eventRequest(
        emqxEvent('message.dropped', {
          id: 'F0'.repeat(16),
          reason: 'no_subscribers',
          clientid: REST_PUBLISHER,
          username: undefined,
          payload: Buffer.from(String(dropped.body.payload)),
          topic: dropped.topic,
          qos: 1,
          flags: { dup: false, retain: false },
          pub_props: pubProps({}),
          publish_received_at: Date.now(),
          timestamp: Date.now(),
          node: 'emqx@emqx',
        }),
      ),
    );
    assert.equal(noSubscriber.statusCode, 204);
    assert.equal((await waitForCommand(admin, deviceId, waiting.id, 'queued')).attempts, parked.attempts);

    // The device subscribes (the simulation has no service to send its events to: these come through the rules here).
    await emqx.subscribe(deviceId, `devices/${deviceId}/commands`);
    const subscribed = await send(
      eventRequest(
        emqxEvent('session.subscribed', { clientid: deviceId, username: deviceId, peerhost: PEER, peername: `${PEER}:51234`, topic: `devices/${deviceId}/commands`, qos: 1, sub_props: {}, timestamp: Date.now(), node: 'emqx@emqx' }),
      ),
    );
    assert.equal(subscribed.statusCode, 204);
    await waitForCommand(admin, deviceId, waiting.id, 'sent');
    const message = published(waiting.id);
    assert.ok(message);
    const acked = await send(eventRequest(deliveryEvent('message.acked', message, { puback_props: {} })));
    assert.equal(acked.statusCode, 204);
    // The delivery event comes after the ack, and twice: nothing moves back.
    assert.equal((await send(eventRequest(deliveryEvent('message.delivered', message)))).statusCode, 204);
    assert.equal((await send(eventRequest(deliveryEvent('message.delivered', message, { flags: { dup: true, retain: false } })))).statusCode, 204);
    const done = await waitForCommand(admin, deviceId, waiting.id, 'acked');
    assert.equal(done.emqx_message_id, message.id);
  });

  it('delivery.dropped with queue_full drops the command', async () => {
    const admin = adminClient(app);
    const full = await command('close');
    await waitForCommand(admin, deviceId, full.id, 'sent');
    const message = published(full.id);
    assert.ok(message);
    assert.equal((await send(eventRequest(deliveryEvent('delivery.dropped', message, { reason: 'queue_full' })))).statusCode, 204);
    assert.equal((await waitForCommand(admin, deviceId, full.id, 'dropped')).reason, 'queue_full');
  });

  it('the replies rule (once enabled) settles a command with the device\'s reply', async () => {
    const admin = adminClient(app);
    const asked = await command('read_level');
    await waitForCommand(admin, deviceId, asked.id, 'sent');
    const message = published(asked.id);
    assert.ok(message);
    await send(eventRequest(deliveryEvent('message.acked', message, { puback_props: {} })));
    await waitForCommand(admin, deviceId, asked.id, 'acked');
    const reply = emqxEvent('message.publish', {
      id: 'AB'.repeat(16),
      clientid: deviceId,
      username: deviceId,
      payload: Buffer.from(JSON.stringify({ command_id: asked.id, status: 'ok', result: { level: 42 } })),
      peerhost: PEER,
      topic: `devices/${deviceId}/command-replies`,
      qos: 1,
      flags: { dup: false, retain: false },
      pub_props: {},
      publish_received_at: Date.now(),
      client_attrs: {},
      timestamp: Date.now(),
      node: 'emqx@emqx',
    });
    const response = await send(eventRequest(reply));
    assert.equal(response.statusCode, 204);
    const settled = await waitForCommand(admin, deviceId, asked.id, 'succeeded');
    assert.deepEqual(settled.reply?.result, { level: 42 });
  });
});

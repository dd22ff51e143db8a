import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { startDevBroker, type DevBroker } from '../../../dev/emqx-sim/emqx-sim.js';
import { silentBrokerLog } from '../../../dev/emqx-sim/log.js';
import { renderEmqxConfig } from '../../../dev/emqx-sim/emqx-config.js';
import { hoconObject, type HoconObject } from '../../../dev/emqx-sim/hocon.js';
import { waitFor } from '../../helpers/wait.js';

/**
 * The development broker against a stand-in service that records what it is
 * sent and answers as told: what reaches the service (templates rendered from
 * deploy/emqx/emqx.conf), how its answers are read (docs/emqx-contract.md §A–§C)
 * and the REST subset (§D, §F).
 */

const TOKEN = 'dev-broker-test-hook-token-0123';
const API = { key: 'dev-broker-key', secret: 'dev-broker-secret' };
const ALLOW_OWN = (id: string, extra: object = {}) => ({
  result: 'allow',
  is_superuser: false,
  client_attrs: { tenant_id: 't1', device_id: id },
  acl: [
    { permission: 'allow', action: 'publish', topic: `devices/${id}/telemetry` },
    { permission: 'allow', action: 'subscribe', topic: `devices/${id}/commands` },
    { permission: 'deny', action: 'all', topic: '#' },
  ],
  ...extra,
});

interface Received {
  readonly path: string;
  readonly authorization: string | undefined;
  readonly body: Record<string, unknown>;
}

type Answer = { status: number; body?: object };

describe('the development broker toward the service', () => {
  let config: HoconObject;
  let service: Server;
  let serviceUrl: string;
  let broker: DevBroker;
  const received: Received[] = [];
  /** How the stand-in answers each path; events default to 204. */
  let answers: Record<string, (body: Record<string, unknown>) => Answer> = {};
  const clients: MqttClient[] = [];

  const connect = async (clientId: string, password = 'secret', clean = true) => {
    const client = await connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { clientId, username: clientId, password, protocolVersion: 4, reconnectPeriod: 0, clean }, false);
    clients.push(client);
    return client;
  };
  const closing = (client: MqttClient) => new Promise<void>((resolve) => client.once('close', () => resolve()));
  const events = (name: string) => received.filter((request) => request.path === '/emqx/events' && request.body.event === name).map((request) => request.body);
  const api = (method: string, path: string, body?: object, auth = `${API.key}:${API.secret}`) =>
    fetch(`${broker.apiUrl}${path}`, {
      method,
      headers: { authorization: `Basic ${Buffer.from(auth).toString('base64')}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });

  before(async () => {
    ({ config } = await renderEmqxConfig({ DEVICE_LINK_HOOK_TOKEN: TOKEN, DEVICE_LINK_API_KEY: API.key, DEVICE_LINK_API_SECRET: API.secret }));
    // A delivery rule beside the shipped ones, as the command downlink adds.
    (hoconObject(config, 'rule_engine.rules').test_delivered = {
      sql: 'SELECT event, id, from_clientid, clientid, topic, qos FROM "$events/message_delivered"',
      actions: ['http:device_link_events'],
    });
    service = createServer((request: IncomingMessage, response: ServerResponse) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
        const path = request.url ?? '';
        received.push({ path, authorization: request.headers.authorization, body });
        const answer = answers[path]?.(body) ?? { status: 204 };
        response.writeHead(answer.status, answer.body ? { 'content-type': 'application/json' } : {});
        response.end(answer.body ? JSON.stringify(answer.body) : undefined);
      });
    });
    service.listen(0, '127.0.0.1');
    await once(service, 'listening');
    const address = service.address();
    serviceUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    broker = await startDevBroker({
      config,
      serviceUrl,
      mqtt: { host: '127.0.0.1', port: 0 },
      api: { host: '127.0.0.1', port: 0, ...API },
      log: silentBrokerLog,
      eventResumeIntervalMs: 20,
    });
  });

  beforeEach(async () => {
    await Promise.allSettled(clients.splice(0).map((client) => client.endAsync(true)));
    received.length = 0;
    answers = { '/emqx/authn': (body) => ({ status: 200, body: ALLOW_OWN(String(body.clientid)) }) };
  });

  after(async () => {
    await Promise.allSettled(clients.map((client) => client.endAsync(true)));
    await broker.close(100);
    service.closeAllConnections();
    service.close();
  });

  it('runs every rule of the shipped emqx.conf', () => {
    assert.deepEqual(broker.rules.skipped, []);
    assert.ok(broker.rules.loaded.length >= 3, broker.rules.loaded.join(', '));
  });

  it('sends the authenticator body template with the rendered hook token, and reads deny and ignore as refusals', async () => {
    await connect('dev-a', 'pw-1');
    const [authn] = received.filter((request) => request.path === '/emqx/authn');
    assert.equal(authn?.authorization, `Bearer ${TOKEN}`);
    assert.deepEqual(authn?.body, { clientid: 'dev-a', username: 'dev-a', password: 'pw-1', peerhost: '127.0.0.1' });

    for (const answer of [
      { status: 200, body: { result: 'deny' } },
      { status: 200, body: { result: 'ignore' } },
      { status: 500, body: { result: 'allow' } },
      { status: 200, body: { result: 'allow', client_attrs: { tenant_id: 7 } } },
      { status: 200, body: { result: 'allow', acl: [{ permission: 'maybe', action: 'all', topic: '#' }] } },
      { status: 200, body: { result: 'allow', expire_at: Math.floor(Date.now() / 1000) - 10 } },
    ]) {
      answers['/emqx/authn'] = () => answer;
      await assert.rejects(connect('dev-b'), (error: { code?: number }) => error.code === 5, JSON.stringify(answer));
    }
  });

  it('decides publish and subscribe with the answer ACL first, and asks the authorization source with qos and retain as strings', async () => {
    // No ACL: everything goes to the HTTP source.
    answers['/emqx/authn'] = () => ({ status: 200, body: { result: 'allow' } });
    answers['/emqx/authz'] = (body) => ({ status: 200, body: { result: body.topic === 'devices/dev-c/telemetry' ? 'allow' : 'deny' } });
    const client = await connect('dev-c');
    await client.publishAsync('devices/dev-x/telemetry', '{}', { qos: 1, retain: true });
    await client.publishAsync('devices/dev-c/telemetry', '{}', { qos: 1 });
    const authz = received.filter((request) => request.path === '/emqx/authz').map((request) => request.body);
    assert.deepEqual(authz[0], { clientid: 'dev-c', username: 'dev-c', topic: 'devices/dev-x/telemetry', action: 'publish', qos: '1', retain: 'true' });
    assert.deepEqual(authz[1], { clientid: 'dev-c', username: 'dev-c', topic: 'devices/dev-c/telemetry', action: 'publish', qos: '1', retain: 'false' });
    await waitFor(() => events('message.publish').length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(
      events('message.publish').map((event) => event.topic),
      ['devices/dev-c/telemetry'],
      'the denied publish is acknowledged and not routed',
    );
    assert.equal(client.connected, true);

    // With the service's ACL the source is never asked: the deny-all rule decides.
    received.length = 0;
    answers['/emqx/authn'] = (body) => ({ status: 200, body: ALLOW_OWN(String(body.clientid)) });
    const device = await connect('dev-d');
    await assert.rejects(device.subscribeAsync('devices/+/commands'));
    const [granted] = await device.subscribeAsync('devices/dev-d/commands', { qos: 1 });
    assert.equal(granted?.qos, 1);
    assert.equal(received.filter((request) => request.path === '/emqx/authz').length, 0);
  });

  it('posts the rule outputs of publish, connect and disconnect events, the payload in base64', async () => {
    const client = await connect('dev-e');
    await client.publishAsync('devices/dev-e/telemetry', Buffer.from([0x7b, 0xff, 0x7d]), { qos: 1 });
    await client.endAsync();
    await waitFor(() => events('client.disconnected').some((event) => event.clientid === 'dev-e'));
    const [publish] = events('message.publish');
    assert.equal(publish?.payload, Buffer.from([0x7b, 0xff, 0x7d]).toString('base64'));
    assert.equal(publish?.payload_encoding, 'base64');
    assert.equal(publish?.clientid, 'dev-e');
    assert.equal(publish?.topic, 'devices/dev-e/telemetry');
    assert.match(String(publish?.id), /^[0-9A-F]{32}$/);
    assert.deepEqual(publish?.client_attrs, { tenant_id: 't1', device_id: 'dev-e' });
    assert.deepEqual(publish?.flags, { dup: false, retain: false });
    const connected = events('client.connected').find((event) => event.clientid === 'dev-e');
    const disconnected = events('client.disconnected').find((event) => event.clientid === 'dev-e');
    assert.equal(connected?.proto_ver, 4);
    assert.equal(connected?.clean_start, true);
    assert.equal(disconnected?.reason, 'normal');
    assert.equal(disconnected?.connected_at, connected?.connected_at);
    assert.ok(Number(disconnected?.disconnected_at) >= Number(connected?.connected_at));
  });

  it('retries an event answered 503 or 429 and drops one answered 400 or 500', async () => {
    let publishes = 0;
    const statuses = [503, 429, 204];
    answers['/emqx/events'] = (body) => (body.event === 'message.publish' ? { status: statuses[publishes++] ?? 204 } : { status: 204 });
    const client = await connect('dev-f');
    await client.publishAsync('devices/dev-f/telemetry', '{}', { qos: 1 });
    await waitFor(() => publishes === 3, 2000);

    for (const status of [400, 500]) {
      let attempts = 0;
      answers['/emqx/events'] = (body) => (body.event === 'message.publish' ? (attempts++, { status }) : { status: 204 });
      await client.publishAsync('devices/dev-f/telemetry', '{}', { qos: 1 });
      await waitFor(() => attempts === 1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(attempts, 1, `${status} is not retried`);
    }
  });

  it('asks authentication before a takeover: a refused newcomer leaves the session, an allowed one takes it over', async () => {
    const first = await connect('dev-g');
    answers['/emqx/authn'] = () => ({ status: 200, body: { result: 'deny' } });
    await assert.rejects(connect('dev-g'));
    assert.equal(first.connected, true);
    await first.publishAsync('devices/dev-g/telemetry', '{}', { qos: 1 });

    answers['/emqx/authn'] = (body) => ({ status: 200, body: ALLOW_OWN(String(body.clientid)) });
    const closed = closing(first);
    await connect('dev-g');
    await closed;
    await waitFor(() => events('client.disconnected').some((event) => event.reason === 'discarded'));
  });

  it('ends a session at expire_at', async () => {
    answers['/emqx/authn'] = (body) => ({ status: 200, body: ALLOW_OWN(String(body.clientid), { expire_at: Math.floor(Date.now() / 1000) + 1 }) });
    const client = await connect('dev-h');
    await closing(client);
    await waitFor(() => events('client.disconnected').some((event) => event.clientid === 'dev-h' && event.reason === 'not_authorized'));
  });

  it('REST: looks a client up, kicks it, and publishes as EMQX answers', async () => {
    assert.equal((await api('GET', '/api/v5/clients/dev-i', undefined, 'dev-broker-key:wrong')).status, 401);
    assert.equal((await api('GET', '/api/v5/clients/dev-i')).status, 404);
    assert.equal((await api('DELETE', '/api/v5/clients/dev-i')).status, 404);

    const client = await connect('dev-i');
    const info = await api('GET', '/api/v5/clients/dev-i');
    assert.equal(info.status, 200);
    assert.equal(((await info.json()) as { connected: boolean }).connected, true);

    // Nobody subscribed: 202 and no id.
    const unrouted = await api('POST', '/api/v5/publish', { topic: 'devices/dev-i/commands', payload: 'x' });
    assert.equal(unrouted.status, 202);
    assert.deepEqual(await unrouted.json(), { reason_code: 16, message: 'no_matching_subscribers' });
    assert.equal((await api('POST', '/api/v5/publish', { topic: 'devices/+/commands', payload: 'x' })).status, 400);

    await client.subscribeAsync('devices/dev-i/commands', { qos: 1 });
    const message = new Promise<[string, Buffer, { qos: number }]>((resolve) => client.once('message', (...args) => resolve(args)));
    const published = await api('POST', '/api/v5/publish', {
      topic: 'devices/dev-i/commands',
      payload: Buffer.from('{"op":"reboot"}').toString('base64'),
      payload_encoding: 'base64',
      qos: 1,
      properties: { message_expiry_interval: 60, user_properties: { command_id: 'c1' } },
    });
    assert.equal(published.status, 200);
    const { id } = (await published.json()) as { id: string };
    assert.match(id, /^[0-9A-F]{32}$/);
    const [topic, payload, packet] = await message;
    assert.equal(topic, 'devices/dev-i/commands');
    assert.equal(payload.toString(), '{"op":"reboot"}');
    assert.equal(packet.qos, 1);
    // The delivery events carry the id the publish answer gave; the client acknowledged it (QoS 1).
    await waitFor(() => events('message.acked').some((event) => event.id === id));
    for (const name of ['message.delivered', 'message.acked']) {
      const event = events(name).find((candidate) => candidate.id === id);
      assert.deepEqual(
        event && { event: event.event, id: event.id, clientid: event.clientid, topic: event.topic, qos: event.qos },
        { event: name, id, clientid: 'dev-i', topic: 'devices/dev-i/commands', qos: 1 },
      );
    }

    const closed = closing(client);
    assert.equal((await api('DELETE', '/api/v5/clients/dev-i')).status, 204);
    await closed;
    await waitFor(() => events('client.disconnected').some((event) => event.clientid === 'dev-i' && event.reason === 'kicked'));
    assert.equal((await api('GET', '/api/v5/clients/dev-i')).status, 404);
  });
});

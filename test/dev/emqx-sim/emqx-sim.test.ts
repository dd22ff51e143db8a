import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { DISCONNECT_REASONS, EVENT_COLUMNS, REST_ANSWERS, SESSION, type EventName } from '../../../dev/emqx-sim/emqx-facts.js';
import { startEmqxSim, type EmqxSim } from '../../../dev/emqx-sim/emqx-sim.js';
import { httpTransport } from '../../../dev/emqx-sim/service.js';
import { ensureDevelopmentCertificates, type DevelopmentCertificates } from '../../../dev/local/tls.js';
import { waitFor } from '../../helpers/wait.js';

/**
 * The EMQX simulation against a stand-in for the service that records what
 * it is sent and answers as told: what reaches the service (templates
 * rendered from deploy/emqx/emqx.conf), how its answers are read, the REST
 * API, sessions of MQTT and programmatic clients alike, and the failures and
 * delivery plans tests ask for.
 */

const TOKEN = 'emqx-sim-test-hook-token-0123';
const API = { key: 'emqx-sim-key', secret: 'emqx-sim-secret' };
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

describe('the EMQX simulation toward the service', () => {
  let service: Server;
  let emqx: EmqxSim;
  let certificates: DevelopmentCertificates;
  let certificateDirectory: string;
  const received: Received[] = [];
  /** How the stand-in answers each path; events default to 204. */
  let answers: Record<string, (body: Record<string, unknown>) => Answer> = {};
  const clients: MqttClient[] = [];

  const connect = async (clientId: string, password = 'secret', clean = true, tls = false) => {
    const url = tls ? `mqtts://127.0.0.1:${emqx.mqttsPort}` : `mqtt://127.0.0.1:${emqx.mqttPort}`;
    const client = await connectAsync(url, { clientId, username: clientId, password, protocolVersion: 4, reconnectPeriod: 0, clean, ca: certificates.ca }, false);
    clients.push(client);
    return client;
  };
  const closing = (client: MqttClient) => new Promise<void>((resolve) => client.once('close', () => resolve()));
  const events = (name: string) => received.filter((request) => request.path === '/emqx/events' && request.body.event === name).map((request) => request.body);
  const api = (method: string, path: string, body?: object, auth = `${API.key}:${API.secret}`) =>
    fetch(`${emqx.url}${path}`, {
      method,
      headers: { authorization: `Basic ${Buffer.from(auth).toString('base64')}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });

  before(async () => {
    certificateDirectory = await mkdtemp(path.join(os.tmpdir(), 'dlm-emqx-sim-tls-'));
    certificates = await ensureDevelopmentCertificates(certificateDirectory);
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
    emqx = await startEmqxSim({
      hookToken: TOKEN,
      apiKey: API.key,
      apiSecret: API.secret,
      service: httpTransport(`http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`),
      mqtt: { host: '127.0.0.1', port: 0 },
      mqtts: { host: '127.0.0.1', port: 0, cert: certificates.cert, key: certificates.key },
      timing: { resumeIntervalMs: 20 },
      seed: 7,
    });
  });

  beforeEach(async () => {
    await Promise.allSettled(clients.splice(0).map((client) => client.endAsync(true)));
    await emqx.settle();
    received.length = 0;
    answers = { '/emqx/authn': (body) => ({ status: 200, body: ALLOW_OWN(String(body.clientid)) }) };
    emqx.deliveryPlan({});
  });

  after(async () => {
    await Promise.allSettled(clients.map((client) => client.endAsync(true)));
    await emqx.close(100);
    service.closeAllConnections();
    service.close();
    await rm(certificateDirectory, { recursive: true, force: true });
  });

  it('runs every rule of the shipped emqx.conf, and every event it raises has only the columns EMQX 5.8 gives it', async () => {
    assert.deepEqual(emqx.rules.skipped, []);
    assert.ok(emqx.rules.loaded.length >= 3, emqx.rules.loaded.join(', '));
    await emqx.subscribe('cols', 'devices/cols/commands', { persistent: true });
    await api('POST', '/api/v5/publish', { topic: 'devices/cols/commands', payload: 'x', qos: 1 });
    await emqx.settle();
    for (const { event } of emqx.events) {
      const name = String(event.event) as EventName;
      const known = new Set<string>(['event', 'timestamp', 'node', 'metadata', 'payload_encoding', ...(EVENT_COLUMNS[name] ?? [])]);
      for (const column of Object.keys(event)) assert.ok(known.has(column), `${name}.${column}`);
    }
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
    assert.equal(disconnected?.reason, DISCONNECT_REASONS.normal);
    assert.equal(disconnected?.connected_at, connected?.connected_at);
    assert.ok(Number(disconnected?.disconnected_at) >= Number(connected?.connected_at));
  });

  it('tells a DISCONNECT from a dropped socket: normal, tcp_closed, and ssl_closed on the TLS listener verified with the development CA', async () => {
    const dropped = await connect('dev-tcp');
    await waitFor(() => events('client.connected').some((event) => event.clientid === 'dev-tcp'));
    dropped.stream.destroy();
    const secure = await connect('dev-ssl', 'secret', true, true);
    await secure.publishAsync('devices/dev-ssl/telemetry', '{"over":"tls"}', { qos: 1 });
    await waitFor(() => events('message.publish').some((event) => event.clientid === 'dev-ssl'));
    secure.stream.destroy();
    const reasonOf = (clientid: string) => events('client.disconnected').find((event) => event.clientid === clientid)?.reason;
    await waitFor(() => reasonOf('dev-tcp') !== undefined && reasonOf('dev-ssl') !== undefined);
    assert.equal(reasonOf('dev-tcp'), DISCONNECT_REASONS.tcpClosed);
    assert.equal(reasonOf('dev-ssl'), DISCONNECT_REASONS.sslClosed);
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
    await waitFor(() => events('client.disconnected').some((event) => event.reason === DISCONNECT_REASONS.discarded));
  });

  it('ends a session at expire_at', async () => {
    answers['/emqx/authn'] = (body) => ({ status: 200, body: ALLOW_OWN(String(body.clientid), { expire_at: Math.floor(Date.now() / 1000) + 1 }) });
    const client = await connect('dev-h');
    await closing(client);
    await waitFor(() => events('client.disconnected').some((event) => event.clientid === 'dev-h' && event.reason === DISCONNECT_REASONS.notAuthorized));
  });

  it('REST: looks a client up, kicks it, and publishes as EMQX answers', async () => {
    assert.equal((await api('GET', '/api/v5/clients/dev-i', undefined, 'emqx-sim-key:wrong')).status, REST_ANSWERS.badApiKey.status);
    assert.equal((await api('GET', '/api/v5/clients/dev-i')).status, 404);
    assert.equal((await api('DELETE', '/api/v5/clients/dev-i')).status, 404);

    const client = await connect('dev-i');
    const info = await api('GET', '/api/v5/clients/dev-i');
    assert.equal(info.status, 200);
    assert.equal(((await info.json()) as { connected: boolean }).connected, true);

    // Nobody subscribed: 202 and no id.
    const unrouted = await api('POST', '/api/v5/publish', { topic: 'devices/dev-i/commands', payload: 'x' });
    assert.equal(unrouted.status, 202);
    assert.deepEqual(await unrouted.json(), REST_ANSWERS.noSubscribers.body);
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
        event && { event: event.event, id: event.id, clientid: event.clientid, topic: event.topic, qos: event.qos, command_id: (event.pub_props as { 'User-Property': object })['User-Property'] },
        { event: name, id, clientid: 'dev-i', topic: 'devices/dev-i/commands', qos: 1, command_id: { command_id: 'c1' } },
      );
    }

    // Bulk: validated first (one bad message: 400, nothing published), then one result per message.
    const before = emqx.published.length;
    const refused = await api('POST', '/api/v5/publish/bulk', [
      { topic: 'devices/dev-i/commands', payload: 'a', qos: 1 },
      { topic: 'devices/+/commands', payload: 'b' },
    ]);
    assert.equal(refused.status, 400);
    assert.deepEqual(await refused.json(), REST_ANSWERS.topicInvalid.body);
    assert.equal(emqx.published.length, before, 'nothing published');
    const partial = await api('POST', '/api/v5/publish/bulk', [
      { topic: 'devices/dev-i/commands', payload: 'a', qos: 1 },
      { topic: 'devices/nobody/commands', payload: 'b', qos: 1 },
    ]);
    assert.equal(partial.status, 202, 'one reached nobody');
    const [handed, nobody] = (await partial.json()) as [{ id: string }, object];
    assert.match(handed.id, /^[0-9A-F]{32}$/);
    assert.deepEqual(nobody, REST_ANSWERS.noSubscribers.body);
    emqx.failNextPublishes(503);
    const failing = await api('POST', '/api/v5/publish/bulk', [
      { topic: 'devices/dev-i/commands', payload: 'a', qos: 1 },
      { topic: 'devices/dev-i/commands', payload: 'b', qos: 1 },
    ]);
    assert.equal(failing.status, 503, 'one failed to dispatch');
    const items = (await failing.json()) as object[];
    assert.deepEqual(items[0], REST_ANSWERS.dispatchFailed.body);
    assert.match((items[1] as { id: string }).id, /^[0-9A-F]{32}$/);
    assert.equal((await api('POST', '/api/v5/publish/bulk', [{ topic: 'devices/dev-i/commands', payload: 'a', qos: 1 }])).status, 200);

    const closed = closing(client);
    assert.equal((await api('DELETE', '/api/v5/clients/dev-i')).status, 204);
    await closed;
    await waitFor(() => events('client.disconnected').some((event) => event.clientid === 'dev-i' && event.reason === DISCONNECT_REASONS.kicked));
    assert.equal((await api('GET', '/api/v5/clients/dev-i')).status, 404);
  });

  it('programmatic clients: a persistent session holds what comes while its client is away and delivers it on reconnect; a clean one gets 202', async () => {
    await emqx.subscribe('prog-a', 'devices/prog-a/commands', { persistent: true });
    emqx.disconnect('prog-a');
    const held = await api('POST', '/api/v5/publish', { topic: 'devices/prog-a/commands', payload: 'held', qos: 1 });
    assert.equal(held.status, 200);
    const { id } = (await held.json()) as { id: string };
    const away = await api('GET', '/api/v5/clients/prog-a');
    assert.equal(((await away.json()) as { connected: boolean }).connected, false, 'an offline persistent session is 200 with connected false');
    await emqx.settle();
    assert.equal(events('message.delivered').filter((event) => event.id === id).length, 0);
    await emqx.connect('prog-a');
    await emqx.settle();
    assert.ok(events('message.acked').some((event) => event.id === id && event.clientid === 'prog-a'));

    await emqx.subscribe('prog-b', 'devices/prog-b/commands');
    emqx.disconnect('prog-b');
    assert.equal((await api('POST', '/api/v5/publish', { topic: 'devices/prog-b/commands', payload: 'lost', qos: 1 })).status, 202);
    assert.equal((await api('GET', '/api/v5/clients/prog-b')).status, 404, 'a clean session ends with its connection');
    await emqx.settle();
    assert.ok(events('message.dropped').some((event) => event.reason === 'no_subscribers' && event.clientid === 'http_api'));
  });

  it('programmatic clients: expiry in the queue, a full queue and dropNext drop deliveries with their reasons; QoS 0 is never acked', async () => {
    const droppedFor = (clientid: string) => events('delivery.dropped').filter((event) => event.clientid === clientid).map((event) => event.reason);
    await emqx.subscribe('prog-c', 'devices/prog-c/commands', { persistent: true });
    emqx.disconnect('prog-c');
    await api('POST', '/api/v5/publish', { topic: 'devices/prog-c/commands', payload: 'stale', qos: 1, properties: { message_expiry_interval: 0 } });
    await new Promise((resolve) => setTimeout(resolve, 5));
    await emqx.connect('prog-c');
    await emqx.settle();
    assert.deepEqual(droppedFor('prog-c'), ['expired'], 'expired while it waited in the queue');

    await emqx.subscribe('prog-g', 'devices/prog-g/commands', { persistent: true });
    emqx.disconnect('prog-g');
    // From another programmatic client: routed without a REST call each.
    await emqx.connect('prog-sender');
    for (let i = 0; i <= SESSION.maxQueueLength; i++) emqx.publish('prog-sender', 'devices/prog-g/commands', `n${i}`, { qos: 1 });
    await emqx.settle();
    assert.deepEqual(droppedFor('prog-g'), ['queue_full'], 'the oldest made room');
    await emqx.connect('prog-g');
    await emqx.settle();
    assert.equal(events('message.acked').filter((event) => event.clientid === 'prog-g').length, SESSION.maxQueueLength);

    emqx.dropNext('prog-c', 'queue_full');
    await api('POST', '/api/v5/publish', { topic: 'devices/prog-c/commands', payload: 'x', qos: 1 });
    await emqx.subscribe('prog-d', 'devices/prog-d/commands', { qos: 0 });
    await api('POST', '/api/v5/publish', { topic: 'devices/prog-d/commands', payload: 'x', qos: 1 });
    await emqx.settle();
    assert.deepEqual(droppedFor('prog-c'), ['expired', 'queue_full']);
    assert.equal(events('message.delivered').find((event) => event.clientid === 'prog-d')?.qos, 0);
    assert.equal(events('message.acked').filter((event) => event.clientid === 'prog-d').length, 0);
  });

  it('failures on purpose: every REST call a status for a while; the next publishes 503, no answer, a dropped connection', async () => {
    emqx.failWith(503);
    assert.equal((await api('GET', '/api/v5/clients/anyone')).status, 503);
    emqx.failWith(null);
    await emqx.subscribe('prog-e', 'devices/prog-e/commands');
    emqx.failNextPublishes(503, 'hang', 'reset');
    const body = { topic: 'devices/prog-e/commands', payload: 'x', qos: 1 };
    const failed = await api('POST', '/api/v5/publish', body);
    assert.equal(failed.status, 503);
    assert.deepEqual(await failed.json(), REST_ANSWERS.dispatchFailed.body);
    await assert.rejects(fetch(`${emqx.url}/api/v5/publish`, { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${API.key}:${API.secret}`).toString('base64')}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(300) }));
    await assert.rejects(api('POST', '/api/v5/publish', body));
    assert.equal((await api('POST', '/api/v5/publish', body)).status, 200);
    assert.deepEqual(
      emqx.published.filter((p) => p.topic === 'devices/prog-e/commands').map((p) => p.status),
      [503, 200],
    );
    assert.ok(emqx.calls.some((call) => call.method === 'GET' && call.clientId === 'anyone' && call.authorized));
  });

  it('delivery plans: events before the publish answer, each twice, in a shuffled order', async () => {
    await emqx.subscribe('prog-f', 'devices/prog-f/commands');
    await emqx.settle();
    emqx.deliveryPlan({ beforeAnswer: true, repeat: true, shuffle: true });
    const before = emqx.events.length;
    const published = await api('POST', '/api/v5/publish', { topic: 'devices/prog-f/commands', payload: 'x', qos: 1 });
    const { id } = (await published.json()) as { id: string };
    const answeredWith = emqx.events.slice(before).filter((sent) => sent.event.id === id).map((sent) => sent.event.event);
    assert.deepEqual([...answeredWith].sort(), ['message.acked', 'message.acked', 'message.delivered', 'message.delivered'], 'sent before the answer, twice');
    const orders = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const mark = emqx.events.length;
      const answer = await api('POST', '/api/v5/publish', { topic: 'devices/prog-f/commands', payload: `${i}`, qos: 1 });
      const next = ((await answer.json()) as { id: string }).id;
      orders.add(emqx.events.slice(mark).filter((sent) => sent.event.id === next).map((sent) => sent.event.event).join(','));
    }
    assert.ok(orders.size > 1, 'the order varies');
  });
});

describe('the EMQX simulation without a journal', () => {
  it('sends events and answers the REST API as with one, and keeps none of it', async () => {
    const sentToService: string[] = [];
    const emqx = await startEmqxSim({
      hookToken: TOKEN,
      apiKey: API.key,
      apiSecret: API.secret,
      service: async (request) => {
        sentToService.push(String((JSON.parse(request.body) as { event?: unknown }).event));
        return { status: 204, contentType: '', body: '' };
      },
      journal: false,
    });
    try {
      await emqx.subscribe('quiet-a', 'devices/quiet-a/commands');
      const published = await fetch(`${emqx.url}/api/v5/publish`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${API.key}:${API.secret}`).toString('base64')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ topic: 'devices/quiet-a/commands', payload: 'x', qos: 1 }),
      });
      assert.equal(published.status, 200);
      await emqx.settle();
      assert.ok(sentToService.includes('message.delivered') && sentToService.includes('message.acked'), sentToService.join(', '));
      assert.deepEqual([emqx.events.length, emqx.calls.length, emqx.published.length], [0, 0, 0]);
    } finally {
      await emqx.close(0);
    }
  });
});

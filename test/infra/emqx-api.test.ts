import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEmqxApi, EmqxApiError } from '../../src/infra/emqx-api.js';
import type { EmqxSim } from '../../dev/emqx-sim/emqx-sim.js';
import { startTestEmqx } from '../helpers/emqx.js';

describe('EMQX REST client', () => {
  let emqx: EmqxSim;
  before(async () => {
    emqx = await startTestEmqx();
  });
  after(() => emqx.close());

  const client = (secret = emqx.apiSecret, timeoutMs = 1000) =>
    createEmqxApi({ apiUrl: emqx.url, apiKey: emqx.apiKey, apiSecret: secret, apiTimeoutMs: timeoutMs });

  it('reads the connected field and treats 404 as unknown', async () => {
    await emqx.connect('a');
    // A persistent session whose client is away.
    await emqx.connect('b', { persistent: true });
    emqx.disconnect('b');
    assert.equal((await client().getClient('a'))?.connected, true);
    assert.equal((await client().getClient('b'))?.connected, false);
    assert.equal(await client().getClient('c'), null);
  });

  it('kicks with DELETE: 204 kicked, 404 not found', async () => {
    await emqx.connect('k');
    assert.equal(await client().kickClient('k'), 'kicked');
    assert.equal(await client().kickClient('k'), 'not_found');
  });

  it('URL-encodes client ids and sends Basic auth', async () => {
    const odd = 'a/b?c#d %';
    await emqx.connect(odd);
    assert.equal((await client().getClient(odd))?.connected, true);
    const call = emqx.calls.at(-1);
    assert.equal(call?.clientId, odd);
    assert.equal(call?.authorized, true);
  });

  it('fails loudly on a wrong secret, an error status or an unreachable EMQX', async () => {
    await assert.rejects(client('wrong').getClient('a'), EmqxApiError);
    emqx.failWith(503);
    try {
      await assert.rejects(client().kickClient('a'), EmqxApiError);
    } finally {
      emqx.failWith(null);
    }
    const unreachable = createEmqxApi({ apiUrl: 'http://127.0.0.1:1', apiKey: 'k', apiSecret: 's', apiTimeoutMs: 500 });
    await assert.rejects(unreachable.getClient('a'), EmqxApiError);
  });

  it('publishes with the fields given: 200 with the id, 202 without one, 400 refused', async () => {
    await emqx.subscribe('dev-1', 'devices/dev-1/commands');
    const message = { topic: 'devices/dev-1/commands', payload: '{"a":1}', qos: 1 as const, retain: false, messageExpiryIntervalS: 30, userProperties: { command_id: 'c-1' } };
    const handed = await client().publish(message);
    assert.equal(handed.kind, 'handed');
    assert.match(handed.kind === 'handed' ? (handed.id ?? '') : '', /^[0-9A-F]{32}$/);
    assert.deepEqual(emqx.published.at(-1)?.body, {
      topic: 'devices/dev-1/commands',
      payload: '{"a":1}',
      payload_encoding: 'plain',
      qos: 1,
      retain: false,
      properties: { message_expiry_interval: 30, user_properties: { command_id: 'c-1' } },
    });
    assert.deepEqual(await client().publish({ ...message, topic: 'devices/nobody/commands' }), { kind: 'no_subscriber' });
    emqx.failNextPublishes(400);
    assert.equal((await client().publish(message)).kind, 'refused');
  });

  it('throws on 503 and when EMQX cannot be reached, and says when the message may have arrived anyway', async () => {
    const message = { topic: 't', payload: 'p', qos: 1 as const, retain: false };
    emqx.failNextPublishes(503, 'hang', 'reset');
    await assert.rejects(client().publish(message), (error: EmqxApiError) => error.status === 503 && !error.ambiguous);
    await assert.rejects(client(emqx.apiSecret, 200).publish(message), (error: EmqxApiError) => error.status === null && error.ambiguous);
    await assert.rejects(client().publish(message), (error: EmqxApiError) => error.status === null && error.ambiguous);
    // Refused: the request never left, so it cannot have arrived.
    const closedPort = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const unreachable = createEmqxApi({ apiUrl: `http://127.0.0.1:${closedPort}`, apiKey: 'k', apiSecret: 's', apiTimeoutMs: 500 });
    await assert.rejects(unreachable.publish(message), (error: EmqxApiError) => error.status === null && !error.ambiguous);
  });
});

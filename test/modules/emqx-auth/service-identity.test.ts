import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';

const USERNAME = 'device-link-ingest';
const PASSWORD = 'subscriber-password-0123456789';

describe('the telemetry subscriber’s identity on /emqx/authn and /emqx/authz', () => {
  let ctx: TestContext;
  let app: FastifyInstance;

  before(async () => {
    ctx = await createTestContext({
      // Nothing listens there: the subscriber keeps retrying in the background; these routes do not depend on it.
      INGEST_MQTT_URL: 'mqtt://127.0.0.1:9',
      INGEST_MQTT_USERNAME: USERNAME,
      INGEST_MQTT_PASSWORD: PASSWORD,
      INGEST_MQTT_SHARE_GROUP: 'ingest',
    });
    app = await ctx.app();
  });
  after(() => ctx?.close());

  const ask = async (url: string, payload: object) => {
    const response = await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` }, payload });
    assert.equal(response.statusCode, 200);
    return response.json() as Record<string, unknown>;
  };

  it('allows the configured password only, as no superuser, with an ACL of the shared subscription alone', async () => {
    const allowed = await ask('/emqx/authn', { clientid: 'dlm-host-0', username: USERNAME, password: PASSWORD, peerhost: '10.0.0.9' });
    assert.deepEqual(allowed, {
      result: 'allow',
      is_superuser: false,
      acl: [
        { permission: 'allow', action: 'subscribe', topic: '$share/ingest/devices/+/telemetry' },
        { permission: 'deny', action: 'all', topic: '#' },
      ],
    });
    assert.deepEqual(await ask('/emqx/authn', { clientid: 'dlm-host-0', username: USERNAME, password: `${PASSWORD}x`, peerhost: '10.0.0.9' }), { result: 'deny' });
    assert.deepEqual(await ask('/emqx/authn', { clientid: 'dlm-host-0', username: USERNAME, password: '', peerhost: '10.0.0.9' }), { result: 'deny' });
  });

  it('authorizes only subscribing to the shared telemetry filter', async () => {
    const authz = (topic: string, action: string) => ask('/emqx/authz', { clientid: 'dlm-host-0', username: USERNAME, topic, action });
    assert.deepEqual(await authz('$share/ingest/devices/+/telemetry', 'subscribe'), { result: 'allow' });
    for (const [topic, action] of [
      ['$share/other/devices/+/telemetry', 'subscribe'],
      ['devices/+/telemetry', 'subscribe'],
      ['#', 'subscribe'],
      [`devices/${randomUUID()}/commands`, 'subscribe'],
      ['$share/ingest/devices/+/telemetry', 'publish'],
      [`devices/${randomUUID()}/telemetry`, 'publish'],
    ] as const) {
      assert.deepEqual(await authz(topic, action), { result: 'deny' }, `${action} ${topic}`);
    }
  });

  it('refuses the service username when the subscription is off: it is then nobody', async () => {
    const plain = await ctx.app({}, { INGEST_MQTT_URL: '', INGEST_MQTT_USERNAME: '', INGEST_MQTT_PASSWORD: '' });
    const response = await plain.inject({
      method: 'POST',
      url: '/emqx/authn',
      headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
      payload: { clientid: 'dlm-host-0', username: USERNAME, password: PASSWORD, peerhost: '10.0.0.9' },
    });
    assert.deepEqual(response.json(), { result: 'deny' });
  });
});

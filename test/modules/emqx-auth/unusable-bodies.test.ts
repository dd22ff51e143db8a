import assert from 'node:assert/strict';
import { Agent, request, type IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { createDirectRoutes } from '../../../src/http/direct-routes.js';
import { registerErrorHandler } from '../../../src/http/error-handler.js';
import { BAD_HOOK_TOKEN, hookTokenCheck } from '../../../src/http/hook-token.js';
import { zodSerializerCompiler, zodValidatorCompiler } from '../../../src/http/zod-type-provider.js';
import { countUnusableBodies, createAuthMetrics } from '../../../src/modules/emqx-auth/auth-metrics.js';
import { authRoutes } from '../../../src/modules/emqx-auth/auth-routes.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';
import { TEST_ADMIN_TOKEN, TEST_HOOK_TOKEN } from '../../helpers/env.js';

/** The largest password, or topic, MQTT lets a client send: a two-byte length. */
const LARGEST_FIELD = 'p'.repeat(65_535);
const HOOK = { authorization: `Bearer ${TEST_HOOK_TOKEN}` };

type Route = '/emqx/authn' | '/emqx/authz';

interface BodyCase {
  readonly what: string;
  readonly payload: string;
  /** The content-type header; none when null. */
  readonly contentType: string | null;
  readonly reason: 'body_too_large' | 'invalid_body';
}

/** Bodies neither route can use, each with the reason it is counted under. */
function unusableBodies(route: Route, deviceId: string): BodyCase[] {
  const json = 'application/json';
  const usable: Record<string, string> = route === '/emqx/authn' ? { clientid: deviceId, username: deviceId, password: 'x' } : { clientid: deviceId, username: deviceId, topic: 't', action: 'publish' };
  return [
    { what: 'past the body limit', payload: oversized(route, usable), contentType: json, reason: 'body_too_large' },
    { what: 'not JSON', payload: '{"clientid": ', contentType: json, reason: 'invalid_body' },
    { what: 'an empty JSON body', payload: '', contentType: json, reason: 'invalid_body' },
    { what: 'a form', payload: `clientid=${deviceId}`, contentType: 'application/x-www-form-urlencoded', reason: 'invalid_body' },
    { what: 'JSON sent as text/plain', payload: JSON.stringify(usable), contentType: 'text/plain', reason: 'invalid_body' },
    { what: 'no content type', payload: JSON.stringify(usable), contentType: null, reason: 'invalid_body' },
    { what: 'a content type that does not parse', payload: JSON.stringify(usable), contentType: 'json', reason: 'invalid_body' },
    { what: 'no clientid', payload: JSON.stringify({ ...usable, clientid: undefined }), contentType: json, reason: 'invalid_body' },
    { what: 'a number for clientid', payload: JSON.stringify({ ...usable, clientid: 42 }), contentType: json, reason: 'invalid_body' },
    { what: 'a JSON array', payload: '[]', contentType: json, reason: 'invalid_body' },
    { what: 'JSON null', payload: 'null', contentType: json, reason: 'invalid_body' },
  ];
}

/**
 * A body past the routes' 64 KiB: a CONNECT with the largest password, or a
 * check of the largest topic. `escaped`: of bytes JSON escapes, as EMQX
 * renders a binary password, six times the size.
 */
function oversized(route: Route, usable: Record<string, string>, escaped = false): string {
  const field = escaped ? '\u0001'.repeat(LARGEST_FIELD.length) : LARGEST_FIELD;
  const body = JSON.stringify(route === '/emqx/authn' ? { ...usable, password: field } : { ...usable, topic: field });
  assert.ok(Buffer.byteLength(body) > 64 * 1024);
  return body;
}

/** The counter of one refusal: devicelink_authn_total{result,reason} or devicelink_authz_total{action,result,reason}. */
async function refusals(app: FastifyInstance, route: Route, reason: string): Promise<number> {
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const series =
    route === '/emqx/authn'
      ? `devicelink_authn_total{result="deny",reason="${reason}"}`
      : `devicelink_authz_total{action="unknown",result="deny",reason="${reason}"}`;
  const line = metrics.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('a body /emqx/authn or /emqx/authz cannot use', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let seed: DeviceSeeder;
  let deviceId: string;
  let key: string;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app({}, { DUPLICATE_CLIENT_POLICY: 'takeover' });
    seed = createDeviceSeeder(ctx.db.url);
    deviceId = await seed.device(await seed.tenant());
    ({ key } = await seed.key(deviceId));
  });
  after(async () => {
    await seed.close();
    await ctx.close();
  });

  /** A usable request to the route and what it is answered: the device's own key, its own telemetry topic. */
  const usableRequest = (route: Route): { body: Record<string, string>; result: string } =>
    route === '/emqx/authn'
      ? { body: { clientid: deviceId, username: deviceId, password: key, peerhost: '10.9.0.1' }, result: 'allow' }
      : { body: { clientid: deviceId, username: deviceId, topic: `devices/${deviceId}/telemetry`, action: 'publish' }, result: 'allow' };

  for (const route of ['/emqx/authn', '/emqx/authz'] as const) {
    it(`${route}: answers 200 deny and counts the reason, for every kind of unusable body`, async () => {
      // Every case is tried, and every one answered otherwise is named.
      const wrong: string[] = [];
      for (const body of unusableBodies(route, deviceId)) {
        const before = await refusals(app, route, body.reason);
        const response = await app.inject({
          method: 'POST',
          url: route,
          headers: { ...HOOK, ...(body.contentType === null ? {} : { 'content-type': body.contentType }) },
          payload: body.payload,
        });
        const counted = (await refusals(app, route, body.reason)) - before;
        const json = /^application\/json/.test(String(response.headers['content-type']));
        if (response.statusCode !== 200 || !json || response.body !== '{"result":"deny"}' || counted !== 1) {
          wrong.push(`${body.what}: ${response.statusCode} ${response.body}, counted ${counted} times as ${body.reason}`);
        }
      }
      assert.deepEqual(wrong, []);
      const usable = usableRequest(route);
      const next = await app.inject({ method: 'POST', url: route, headers: HOOK, payload: usable.body });
      assert.deepEqual(next.json().result, usable.result);
    });

    it(`${route}: still answers a wrong hook token 401, whatever the body`, async () => {
      for (const body of unusableBodies(route, deviceId)) {
        const response = await app.inject({
          method: 'POST',
          url: route,
          headers: { authorization: 'Bearer wrong', ...(body.contentType === null ? {} : { 'content-type': body.contentType }) },
          payload: body.payload,
        });
        assert.equal(response.statusCode, 401, body.what);
        assert.deepEqual(response.json(), { result: 'ignore', reason: 'bad hook token' }, body.what);
      }
    });
  }

  it('leaves every other error to the app error handler: a failing service is not a deny', async () => {
    const failing = Fastify();
    failing.setValidatorCompiler(zodValidatorCompiler);
    failing.setSerializerCompiler(zodSerializerCompiler);
    registerErrorHandler(failing);
    const metrics = createAuthMetrics(new Registry());
    const fail = () => {
      throw new Error('the service failed');
    };
    const direct = createDirectRoutes({ authorized: hookTokenCheck([TEST_HOOK_TOKEN]), unauthorized: BAD_HOOK_TOKEN, log: failing.log, recorderFor: () => () => {} });
    await failing.register(authRoutes, { direct, authn: { authenticate: async () => fail() }, authz: { authorize: fail }, unusableBodies: countUnusableBodies(metrics) });
    try {
      for (const route of ['/emqx/authn', '/emqx/authz'] as const) {
        const response = await failing.inject({ method: 'POST', url: route, headers: HOOK, payload: usableRequest(route).body });
        assert.equal(response.statusCode, 500, `${route}: ${response.body}`);
        assert.equal(response.json().code, 'internal_error');
      }
    } finally {
      await failing.close();
    }
  });

  it('leaves the admin API answering body problems with its own error shape', async () => {
    const headers = { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const tooLarge = await app.inject({ method: 'POST', url: '/v1/tenants', headers, payload: JSON.stringify({ name: 'x'.repeat(1024 * 1024) }) });
    assert.equal(tooLarge.statusCode, 413);
    assert.equal(tooLarge.json().code, 'fst_err_ctp_body_too_large');
    const notJson = await app.inject({ method: 'POST', url: '/v1/tenants', headers, payload: '{"name": ' });
    assert.equal(notJson.statusCode, 400);
    assert.deepEqual(Object.keys(notJson.json()).sort(), ['code', 'error', 'message', 'requestId', 'statusCode']);
  });

  describe('over a listening socket, with the largest password or topic MQTT allows', () => {
    let origin: string;
    before(async () => {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      assert.ok(address && typeof address === 'object');
      origin = `http://127.0.0.1:${address.port}`;
    });

    interface Answer {
      readonly status: number;
      readonly headers: IncomingMessage['headers'];
      readonly body: string;
      /** The client end of the connection the request went on. */
      readonly localPort: number | undefined;
    }

    /** One POST; `chunks` given, the body goes chunked, one write per chunk, a turn of the event loop apart. */
    function post(agent: Agent, route: Route, body: string, chunks?: number): Promise<Answer> {
      return new Promise((resolve, reject) => {
        const req = request(`${origin}${route}`, {
          method: 'POST',
          agent,
          headers: { ...HOOK, 'content-type': 'application/json', ...(chunks === undefined ? { 'content-length': Buffer.byteLength(body) } : {}) },
        });
        req.on('error', reject);
        req.on('response', (res) => {
          const { localPort } = res.socket;
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, localPort }));
          res.on('error', reject);
        });
        if (chunks === undefined) {
          req.end(body);
          return;
        }
        const size = Math.ceil(body.length / chunks);
        let offset = 0;
        const writeNext = () => {
          if (offset >= body.length) return void req.end();
          req.write(body.slice(offset, offset + size));
          offset += size;
          setImmediate(writeNext);
        };
        writeNext();
      });
    }

    it('serves /emqx/authz ahead of Fastify and through it alike, counting each request once', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const served = async () => {
        const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
        return Number(/devicelink_http_requests_total\{route="\/emqx\/authz",method="POST",status="200"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      };
      try {
        const usable = usableRequest('/emqx/authz');
        const before = await served();
        // Over the socket: directly, and with a query string through Fastify's router; then inject, through Fastify.
        for (const route of ['/emqx/authz', '/emqx/authz?from=emqx'] as const) {
          const answer = await post(agent, route as Route, JSON.stringify(usable.body));
          assert.deepEqual([answer.status, JSON.parse(answer.body)], [200, { result: usable.result }], route);
        }
        const injected = await app.inject({ method: 'POST', url: '/emqx/authz', headers: HOOK, payload: usable.body });
        assert.deepEqual(injected.json(), { result: usable.result });
        assert.equal(await served(), before + 3);
        // Another method is Fastify's to answer, as before.
        const read = await app.inject({ method: 'GET', url: '/emqx/authz', headers: HOOK });
        assert.equal(read.statusCode, 404);
        assert.equal(read.json().code, 'route_not_found');
      } finally {
        agent.destroy();
      }
    });

    for (const route of ['/emqx/authn', '/emqx/authz'] as const) {
      for (const framing of ['Content-Length', 'chunked'] as const) {
        it(`${route}, ${framing}: 200 deny, and the same connection answers the next request`, async () => {
          const agent = new Agent({ keepAlive: true, maxSockets: 1 });
          try {
            const usable = usableRequest(route);
            const before = await refusals(app, route, 'body_too_large');

            // Escaped, the body goes on well past the limit: most of it comes after the answer.
            const refused = await post(agent, route, oversized(route, usable.body, true), framing === 'chunked' ? 16 : undefined);
            assert.equal(refused.status, 200, refused.body);
            assert.deepEqual(JSON.parse(refused.body), { result: 'deny' });
            assert.notEqual(refused.headers.connection, 'close');
            assert.equal(await refusals(app, route, 'body_too_large'), before + 1);

            const next = await post(agent, route, JSON.stringify(usable.body));
            assert.equal(next.status, 200, next.body);
            assert.equal(JSON.parse(next.body).result, usable.result);
            assert.equal(next.localPort, refused.localPort, 'the next request went on the same connection');
          } finally {
            agent.destroy();
          }
        });
      }
    }
  });
});

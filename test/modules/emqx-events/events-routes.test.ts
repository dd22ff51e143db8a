import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { shareLoggerPerLevel } from '../../../src/http/shared-logger.js';
import { zodValidatorCompiler } from '../../../src/http/zod-type-provider.js';
import { eventsRoutes } from '../../../src/modules/emqx-events/events-routes.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';

describe('POST /emqx/events dispatch', () => {
  let ctx: TestContext;
  let app: FastifyInstance;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
  });
  after(() => ctx.close());

  const post = (body: unknown, authorization: string | null = `Bearer ${TEST_HOOK_TOKEN}`) =>
    app.inject({
      method: 'POST',
      url: '/emqx/events',
      headers: authorization === null ? {} : { authorization },
      payload: body as object,
    });

  it('refuses a missing or wrong hook token with 401', async () => {
    for (const authorization of [null, 'Bearer wrong', `Bearer ${TEST_HOOK_TOKEN}x`, TEST_HOOK_TOKEN]) {
      const response = await post({ event: 'session.subscribed' }, authorization);
      assert.equal(response.statusCode, 401, String(authorization));
      assert.equal(response.json().result, 'ignore');
    }
  });

  it('answers 2xx for an event nobody consumes, so EMQX does not retry it forever', async () => {
    const response = await post({ event: 'session.subscribed', clientid: 'x', topic: 't' });
    assert.equal(response.statusCode, 204);
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /emqx_events_total\{event="unknown",outcome="ignored"\} 1/);
  });

  it('the hook token does not apply outside /emqx', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });
});

describe('a failing event handler', () => {
  it('answers 503 (EMQX retries) and logs the failure with its request id', async () => {
    const lines: string[] = [];
    const app = Fastify({ logger: { stream: { write: (line: string) => void lines.push(line) } }, requestIdHeader: 'x-request-id' });
    app.setValidatorCompiler(zodValidatorCompiler);
    await app.register(async (emqx) => {
      shareLoggerPerLevel(emqx, { context: 'emqx' });
      await emqx.register(eventsRoutes, {
        handlers: {
          'message.publish': () => Promise.reject(new Error('bug')),
        },
        metrics: new Registry(),
      });
    });
    try {
      const response = await app.inject({ method: 'POST', url: '/emqx/events', headers: { 'x-request-id': 'emqx-req-42' }, payload: { event: 'message.publish' } });
      assert.equal(response.statusCode, 503);
      const logged = lines.map((line) => JSON.parse(line) as { msg?: string; requestId?: string; context?: string });
      const failure = logged.find((line) => line.msg === 'event handler failed');
      assert.deepEqual([failure?.requestId, failure?.context], ['emqx-req-42', 'emqx']);
    } finally {
      await app.close();
    }
  });
});

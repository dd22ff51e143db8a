import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
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

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { createDirectRoutes } from '../../../src/http/direct-routes.js';
import { BAD_HOOK_TOKEN, hookTokenCheck } from '../../../src/http/hook-token.js';
import { eventsRoutes } from '../../../src/modules/emqx-events/events-routes.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createTopicNames } from '../../../src/lib/topics.js';
import { TEST_HOOK_TOKEN } from '../../helpers/env.js';
import { consumeRecords } from '../../helpers/kafka.js';

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

  const raw = (body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }, target = app) =>
    target.inject({ method: 'POST', url: '/emqx/events', headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}`, ...headers }, payload: body });
  const deadLetters = async () =>
    (await consumeRecords([createTopicNames(ctx.config.kafka.topicPrefix).unattributedDlq], 1_000_000, { timeoutMs: 4000 })).map(
      (record) => JSON.parse(record.value ?? '{}') as { reason: string; detail: string; payload_base64: string | null; payload_bytes: number; payload_truncated: boolean },
    );

  it('keeps what no handler can take on the dead-letter topic and answers 2xx, never what EMQX drops', async () => {
    const unknown = JSON.stringify({ event: 'session.unsubscribed', clientid: 'x', topic: 't' });
    const answers = [
      await raw(unknown),
      await raw('{"event": "message.publish", '),
      await raw('[1, 2, 3]'),
      await raw(JSON.stringify({ clientid: 'no-event-name' })),
      await raw(''),
      await raw('event=message.publish', { 'content-type': 'application/x-www-form-urlencoded' }),
      await raw('{"event":"message.publish"}', {}),
    ];
    assert.deepEqual(answers.map((answer) => answer.statusCode), [204, 204, 204, 204, 204, 204, 204]);
    const kept = await deadLetters();
    const reasons = kept.map((letter) => letter.reason);
    assert.equal(reasons.filter((reason) => reason === 'unknown_event').length, 1);
    assert.ok(reasons.filter((reason) => reason === 'invalid_event').length >= 5, reasons.join());
    const unknownLetter = kept.find((letter) => letter.reason === 'unknown_event');
    assert.equal(Buffer.from(unknownLetter?.payload_base64 ?? '', 'base64').toString(), unknown, 'the body as received');
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /^devicelink_emqx_events_total\{event="unusable",outcome="handled"\} [1-9]/m);
    assert.match(metrics, /^devicelink_telemetry_dead_lettered_total\{reason="unknown_event"\} 1$/m);
  });

  it('dead-letters an event larger than any allowed payload makes (2xx, not 413), keeping its first bytes and its size', async () => {
    const small = await ctx.app({}, { INGEST_MAX_PAYLOAD_BYTES: '1024' });
    const huge = JSON.stringify({ event: 'message.publish', id: 'X', payload: 'A'.repeat(3 * 1024 * 1024) });
    const answer = await raw(huge, undefined, small);
    assert.equal(answer.statusCode, 204);
    const letter = (await deadLetters()).find((candidate) => candidate.reason === 'event_too_large');
    assert.ok(letter, 'dead-lettered');
    assert.equal(letter.payload_bytes, Buffer.byteLength(huge));
    assert.equal(letter.payload_truncated, true);
    assert.ok(Buffer.from(letter.payload_base64 ?? '', 'base64').toString().startsWith('{"event":"message.publish"'));
  });

  it('accepts the previous hook token while it is set, so a token rotation loses no event', async () => {
    const rotating = await ctx.app({}, { EMQX_HOOK_TOKEN: 'the-new-hook-token-0123456789', EMQX_HOOK_TOKEN_PREVIOUS: TEST_HOOK_TOKEN });
    const send = (token: string) =>
      rotating.inject({ method: 'POST', url: '/emqx/authz', headers: { authorization: `Bearer ${token}` }, payload: { clientid: 'x', username: 'x', topic: 't', action: 'publish' } });
    assert.equal((await send('the-new-hook-token-0123456789')).statusCode, 200);
    assert.equal((await send(TEST_HOOK_TOKEN)).statusCode, 200);
    assert.equal((await send('some-other-token-0123456789')).statusCode, 401);
    assert.equal((await post({ event: 'client.connected' }, 'Bearer the-new-hook-token-0123456789')).statusCode, 401, 'the other app knows only its own token');
  });

  it('keeps authn and authz bodies small: a larger one is answered deny, not 413', async () => {
    const response = await app.inject({
      method: 'POST',
      url: '/emqx/authn',
      headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ clientid: 'x', username: 'x', password: 'p'.repeat(100 * 1024) }),
    });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { result: 'deny' });
  });

  it('the hook token does not apply outside /emqx', async () => {
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });
});

describe('a failing event handler', () => {
  it('answers 503 (EMQX retries) and logs the failure with the event it was', async () => {
    const lines: string[] = [];
    const app = Fastify({ logger: { stream: { write: (line: string) => void lines.push(line) } } });
    const direct = createDirectRoutes({ authorized: hookTokenCheck([TEST_HOOK_TOKEN]), unauthorized: BAD_HOOK_TOKEN, log: app.log, recorderFor: () => () => {} });
    await app.register(async (emqx) => {
      await emqx.register(eventsRoutes, {
        direct,
        handlers: {
          'message.publish': () => Promise.reject(new Error('bug')),
        },
        unusable: () => Promise.resolve({ kind: 'handled' }),
        maxEventBytes: 64 * 1024,
        metrics: new Registry(),
      });
    });
    try {
      const response = await app.inject({ method: 'POST', url: '/emqx/events', headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` }, payload: { event: 'message.publish' } });
      assert.equal(response.statusCode, 503);
      assert.equal(response.headers['retry-after'], '1');
      assert.deepEqual(response.json(), { result: 'retry', reason: 'handler_error' });
      const logged = lines.map((line) => JSON.parse(line) as { msg?: string; context?: string; event?: string; err?: { message?: string } });
      const failure = logged.find((line) => line.msg === 'event handler failed');
      assert.deepEqual([failure?.context, failure?.event, failure?.err?.message], ['emqx', 'message.publish', 'bug']);
    } finally {
      await app.close();
    }
  });
});

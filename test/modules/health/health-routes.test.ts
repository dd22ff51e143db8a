import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTestContext, type TestContext } from '../../helpers/context.js';

describe('health routes', () => {
  let ctx: TestContext;
  let app: FastifyInstance;

  before(async () => {
    ctx = await createTestContext();
    app = await ctx.app();
  });
  after(() => ctx.close());

  it('GET /healthz answers while the process is up', async () => {
    const response = await app.inject({ method: 'GET', url: '/healthz' });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { status: 'ok' });
  });

  it('GET /readyz is 200 when Postgres, Redis and Kafka answer', async () => {
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), {
      status: 'ready',
      down: [],
      checks: { postgres: 'up', redis: 'up', kafka: 'up' },
      causes: {},
    });
  });

  it('GET /metrics exposes process metrics and requests by route and status', async () => {
    await app.inject({ method: 'GET', url: '/healthz' });
    await app.inject({ method: 'GET', url: '/no-such-route' });
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers['content-type']), /^text\/plain/);
    assert.match(response.body, /process_resident_memory_bytes/);
    assert.match(response.body, /devicelink_http_requests_total\{route="\/healthz",method="GET",status="200"\} \d+/);
    assert.match(response.body, /devicelink_http_requests_total\{route="unmatched",method="GET",status="404"\} 1/);
    assert.match(response.body, /devicelink_http_request_duration_seconds_bucket\{le="0.005",route="\/healthz"/);
    assert.match(response.body, /# TYPE devicelink_http_request_duration_seconds histogram/);
    assert.match(response.body, /# TYPE devicelink_http_requests_total counter/);
  });

  it('counts every answered request once, in a histogram whose buckets are cumulative', async () => {
    const series = 'route="/readyz",method="GET",status="200"';
    const read = async () => {
      const body = (await app.inject({ method: 'GET', url: '/metrics' })).body;
      const value = (name: string, labels = series) => {
        const line = body.split('\n').find((candidate) => candidate.startsWith(`${name}{${labels}}`));
        return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
      };
      const buckets = body
        .split('\n')
        .filter((line) => line.startsWith('devicelink_http_request_duration_seconds_bucket{') && line.includes(series))
        .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
      return {
        total: value('devicelink_http_requests_total'),
        count: value('devicelink_http_request_duration_seconds_count'),
        sum: value('devicelink_http_request_duration_seconds_sum'),
        inf: value('devicelink_http_request_duration_seconds_bucket', `le="+Inf",${series}`),
        buckets,
      };
    };
    const before = await read();
    for (let i = 0; i < 5; i++) await app.inject({ method: 'GET', url: '/readyz' });
    const after = await read();
    assert.equal(after.total - before.total, 5);
    assert.equal(after.count - before.count, 5);
    assert.equal(after.inf, after.count);
    assert.ok(after.sum > before.sum);
    assert.equal(after.buckets.length, 14);
    assert.deepEqual(after.buckets, [...after.buckets].sort((a, b) => a - b), 'cumulative');
  });

  it('unknown routes answer the common error shape, with the id the service gave the request', async () => {
    const response = await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'req-1' } });
    assert.equal(response.statusCode, 404);
    const { requestId, ...body } = response.json();
    assert.deepEqual(body, {
      statusCode: 404,
      error: 'Not Found',
      code: 'route_not_found',
      message: 'no route GET /nope',
    });
    assert.match(requestId, /^[0-9a-f]{24}-[0-9a-z]+$/, "not the client's x-request-id");
  });
});

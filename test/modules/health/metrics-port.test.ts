import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { buildApp, listen } from '../../../src/app.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { testConfig } from '../../helpers/env.js';

const portOf = (server: { address(): AddressInfo | string | null }) => (server.address() as AddressInfo).port;

describe('METRICS_PORT', () => {
  let ctx: TestContext;

  before(async () => {
    ctx = await createTestContext();
  });
  after(() => ctx.close());

  it('serves /metrics on its own listener only, opened by listen() and closed with the app', async () => {
    const config = testConfig(ctx.tag, ctx.db.url, { METRICS_PORT: '0' });
    const app = await buildApp(config);
    let servicePort = 0;
    let metricsPort = 0;
    try {
      const metricsServer = app.metricsServer;
      assert.ok(metricsServer, 'the app has a metrics listener');
      assert.equal(app.server.listening || metricsServer.server.listening, false, 'a built app listens on nothing');
      assert.ok(!app.routeList.includes('GET /metrics'));

      await listen(app, config);
      servicePort = portOf(app.server);
      metricsPort = portOf(metricsServer.server);
      assert.notEqual(servicePort, metricsPort);

      const onService = await fetch(`http://127.0.0.1:${servicePort}/metrics`);
      assert.equal(onService.status, 404);
      assert.equal(((await onService.json()) as { code: string }).code, 'route_not_found');
      const scraped = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(scraped.status, 200);
      assert.match(String(scraped.headers.get('content-type')), /^text\/plain; version=0\.0\.4/);
      const text = await scraped.text();
      assert.match(text, /process_resident_memory_bytes/);
      assert.match(text, /devicelink_http_requests_total\{route="unmatched",method="GET",status="404"\} 1/, 'the service port\'s requests are counted');
      assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status, 404, 'the metrics port serves metrics only');
    } finally {
      await app.close();
    }
    for (const port of [servicePort, metricsPort]) {
      await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), (error: Error) => (error.cause as NodeJS.ErrnoException).code === 'ECONNREFUSED', `port ${port} is closed`);
    }
  });

  it('without it, /metrics stays on the service port', async () => {
    const app = await ctx.app();
    assert.equal(app.metricsServer, null);
    assert.ok(app.routeList.includes('GET /metrics'));
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  });
});

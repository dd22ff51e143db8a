import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { chromium, type BrowserContext } from 'playwright-core';
import { parse } from 'yaml';
import { logCapture } from '../helpers/admin.js';
import { createTestContext, type TestContext } from '../helpers/context.js';

/** Debian's Chromium, which .ci/run installs where it is missing. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe('the API reference at /docs', () => {
  let ctx: TestContext;
  let app: FastifyInstance;
  let origin: string;
  const logs = logCapture();

  before(async () => {
    ctx = await createTestContext({ LOG_LEVEL: 'info' });
    app = await ctx.app({ logStream: logs.stream });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    assert.ok(address && typeof address === 'object');
    origin = `http://127.0.0.1:${address.port}`;
  });
  after(() => ctx.close());

  it('serves the page, its files and the document without a token, and logs none of them', async () => {
    logs.lines.length = 0;
    const page = await app.inject({ method: 'GET', url: '/docs' });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
    for (const file of ['swagger-ui.css', 'swagger-ui-bundle.js', 'reference.js']) {
      const answer = await app.inject({ method: 'GET', url: `/docs/${file}` });
      assert.equal(answer.statusCode, 200, file);
      assert.ok(answer.rawPayload.length > 0, file);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/docs/index.html' })).statusCode, 400);
    const document = await app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(document.statusCode, 200);
    assert.deepEqual(document.json(), parse(await readFile('openapi.yaml', 'utf8')));
    assert.deepEqual(
      logs.lines.filter((line) => /\/docs|\/openapi\.json/.test(line)),
      [],
    );
  });

  it('renders in a browser, from this service alone: a route and the description of one of its parameters are visible', async () => {
    assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH; .ci/run installs it`);
    // A fresh profile: nothing cached or remembered from another run.
    const profile = await mkdtemp(path.join(tmpdir(), 'dlm-docs-chromium-'));
    try {
      const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
      try {
        await rendersFromThisServiceAlone(browser);
      } finally {
        await browser.close();
      }
    } finally {
      await rm(profile, { recursive: true, force: true });
    }
  });

  async function rendersFromThisServiceAlone(browser: BrowserContext) {
    const page = await browser.newPage();
    const requested: string[] = [];
    const problems: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    page.on('requestfailed', (request) => problems.push(`failed: ${request.url()}`));
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });

    await page.goto(`${origin}/docs`);
    const operation = page.locator('#operations-commands-createCommand');
    await operation.getByText('Send a command to the device (202 with the queued command)').waitFor({ state: 'visible', timeout: 20_000 });
    await operation.locator('.opblock-summary').click();
    const description = operation.getByText('Makes a retried create return the command the first one made');
    await description.waitFor({ state: 'visible', timeout: 10_000 });
    assert.ok(await description.isVisible());

    assert.deepEqual(problems, []);
    assert.deepEqual(
      requested.filter((url) => !url.startsWith(`${origin}/`)),
      [],
      'the page loads nothing from elsewhere',
    );
    assert.ok(requested.includes(`${origin}/openapi.json`), requested.join('\n'));
  }
});

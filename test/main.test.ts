import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from './helpers/database.js';
import { testEnv, uniqueTag } from './helpers/env.js';
import { freePort } from './helpers/ports.js';

/** A TCP server that accepts connections and never answers: a hung dependency. */
async function blackhole(): Promise<{ address: string; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

function startMain(env: Record<string, string>): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`main did not start:\n${output}`)), 20_000);
    child.stdout?.on('data', () => {
      // The service's own port; a metrics listener's line names its listener.
      const listening = output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { msg?: string; listener?: string })
        .find((line) => line.listener === undefined && line.msg?.startsWith('Server listening at http://127.0.0.1:'));
      if (listening) {
        clearTimeout(timer);
        resolve({ child, port: Number(listening.msg?.split(':').at(-1)), output: () => output });
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`main exited early:\n${output}`));
    });
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function get(port: number, path: string, agent: http.Agent | false = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

function getWithHeaders(port: number, path: string, agent: http.Agent): Promise<{ status: number; body: string; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body, connection: response.headers.connection }));
      })
      .on('error', reject);
  });
}

describe('main process', () => {
  let db: TestDatabase;
  let tag: string;

  before(async () => {
    tag = uniqueTag();
    db = await createTestDatabase(tag);
  });
  after(() => db.drop());

  it('SIGTERM lets in-flight requests complete, then exits 0', async () => {
    // Kafka that never answers makes /readyz take its full probe timeout: a
    // request that is still in flight when the signal arrives.
    const kafka = await blackhole();
    try {
      const { child, port, output } = await startMain({
        ...testEnv(tag, db.url, { KAFKA_BROKERS: kafka.address, LOG_LEVEL: 'info', MIGRATE_ON_START: 'true' }),
      });
      const exited = exitOf(child);
      // A keep-alive client, like EMQX's connection pool, must not hold the shutdown open.
      const keepAlive = new http.Agent({ keepAlive: true, keepAliveMsecs: 60_000 });
      const startedAt = Date.now();
      const inFlight = get(port, '/readyz', keepAlive);
      await new Promise((resolve) => setTimeout(resolve, 300));
      child.kill('SIGTERM');
      const response = await inFlight;
      // Answered, though the process is stopping by then: unready as draining, Kafka reported down.
      assert.equal(response.status, 503);
      assert.deepEqual(JSON.parse(response.body).status, 'draining');
      assert.deepEqual(JSON.parse(response.body).down, ['kafka']);
      assert.equal(await exited, 0, output());
      assert.ok(Date.now() - startedAt < 10_000, `shutdown took ${Date.now() - startedAt} ms`);
      keepAlive.destroy();
      assert.match(output(), /shutdown complete/);
      await assert.rejects(get(port, '/healthz'), /ECONNREFUSED/);
    } finally {
      kafka.close();
    }
  });

  it('with SHUTDOWN_DRAIN_DELAY_MS, SIGTERM first answers unready and moves keep-alive connections away, then closes', async () => {
    const { child, port, output } = await startMain(testEnv(tag, db.url, { LOG_LEVEL: 'info', SHUTDOWN_DRAIN_DELAY_MS: '1500' }));
    const exited = exitOf(child);
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await getWithHeaders(port, '/readyz', keepAlive);
      assert.equal(before.status, 200);
      assert.equal(before.connection, 'keep-alive');
      const signalledAt = Date.now();
      child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Still answering during the pause: unready, and the connection closes after the answer.
      const draining = await getWithHeaders(port, '/readyz', keepAlive);
      assert.equal(draining.status, 503);
      assert.equal(JSON.parse(draining.body).status, 'draining');
      assert.equal(draining.connection, 'close');
      const healthy = await getWithHeaders(port, '/healthz', keepAlive);
      assert.equal(healthy.status, 200, 'requests that still arrive are served');
      assert.equal(healthy.connection, 'close');
      assert.equal(await exited, 0, output());
      const took = Date.now() - signalledAt;
      assert.ok(took >= 1400 && took < 10_000, `stopped ${took} ms after SIGTERM, after the 1.5 s pause`);
      assert.match(output(), /shutting down: unready, moving connections away/);
      await assert.rejects(get(port, '/healthz'), /ECONNREFUSED/);
    } finally {
      keepAlive.destroy();
      child.kill('SIGKILL');
    }
  });

  it('with METRICS_PORT, serves /metrics on that port only and closes both ports on SIGTERM', async () => {
    const metricsPort = await freePort();
    const { child, port, output } = await startMain(testEnv(tag, db.url, { LOG_LEVEL: 'info', METRICS_PORT: String(metricsPort) }));
    const exited = exitOf(child);
    try {
      const onService = await get(port, '/metrics');
      assert.equal(onService.status, 404, 'the service port does not serve metrics');
      assert.equal(JSON.parse(onService.body).code, 'route_not_found');
      assert.equal((await get(port, '/healthz')).status, 200);
      const scraped = await get(metricsPort, '/metrics');
      assert.equal(scraped.status, 200);
      assert.match(scraped.body, /^# HELP /m);
      assert.match(scraped.body, /devicelink_http_requests_total\{route="\/healthz",method="GET",status="200"\} 1/, 'the service port\'s requests are counted');
      assert.equal((await get(metricsPort, '/healthz')).status, 404, 'the metrics port serves metrics only');
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, output());
    await assert.rejects(get(port, '/healthz'), /ECONNREFUSED/);
    await assert.rejects(get(metricsPort, '/metrics'), /ECONNREFUSED/);
  });

  it('refuses to start with a bad configuration, naming the variable', async () => {
    const env = testEnv(tag, db.url, { KAFKA_BROKERS: 'not-a-broker-list' });
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ...env, ADMIN_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    assert.equal(await exitOf(child), 78);
    assert.match(stderr, /ADMIN_TOKEN: is required/);
    assert.match(stderr, /KAFKA_BROKERS: must be a comma-separated list of host:port/);
  });
});

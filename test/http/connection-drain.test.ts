import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { registerConnectionDrain, type ConnectionLimits } from '../../src/http/connection-drain.js';
import { createTestContext } from '../helpers/context.js';

/** A server answering each request with the client's port: which connection it came on. */
async function serve(limits: ConnectionLimits, now?: () => number, answerAfterMs = 0) {
  const server = http.createServer((request, response) => {
    const answer = () => response.end(String(request.socket.remotePort));
    if (answerAfterMs > 0) setTimeout(answer, answerAfterMs);
    else answer();
  });
  const drain = registerConnectionDrain(server, limits, now);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, drain, port: (server.address() as AddressInfo).port };
}

/** Requests one after the other on one keep-alive connection at a time, as EMQX's pool does. */
function client(port: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = () =>
    new Promise<{ via: string; connection: string | undefined }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (response) => {
          let body = '';
          response.on('data', (chunk) => (body += chunk));
          response.on('end', () => resolve({ via: body, connection: response.headers.connection }));
        })
        .on('error', reject);
    });
  return { get, close: () => agent.destroy() };
}

describe('keep-alive connection bounds', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const close of cleanup.splice(0)) close();
  });

  it('closes a connection with its HTTP_CONNECTION_MAX_REQUESTS-th answer; the client goes on over a new one', async () => {
    const { server, port } = await serve({ maxRequests: 3, maxAgeMs: 0 });
    const { get, close } = client(port);
    cleanup.push(close, () => server.close());
    const answers = [];
    for (let i = 0; i < 7; i++) answers.push(await get());
    assert.deepEqual(
      answers.map(({ connection }) => connection),
      ['keep-alive', 'keep-alive', 'close', 'keep-alive', 'keep-alive', 'close', 'keep-alive'],
    );
    const connections = answers.map(({ via }) => via);
    assert.equal(new Set(connections).size, 3, 'three connections for seven requests');
    assert.equal(new Set(connections.slice(0, 3)).size, 1);
    assert.equal(new Set(connections.slice(3, 6)).size, 1);
  });

  it('closes a connection with its first answer past HTTP_CONNECTION_MAX_AGE_MS', async () => {
    let clock = 1_000_000;
    const { server, port } = await serve({ maxRequests: 0, maxAgeMs: 60_000 }, () => clock);
    const { get, close } = client(port);
    cleanup.push(close, () => server.close());
    const first = await get();
    clock += 59_999;
    const young = await get();
    assert.equal(young.connection, 'keep-alive');
    assert.equal(young.via, first.via);
    clock += 1;
    const old = await get();
    assert.equal(old.connection, 'close', 'past its age, the answer closes the connection');
    assert.equal(old.via, first.via);
    const next = await get();
    assert.notEqual(next.via, first.via, 'the next request comes on a new connection');
    assert.equal(next.connection, 'keep-alive', 'whose age counts from its own first request');
  });

  it('without bounds keeps one connection; once draining, closes each after its next answer', async () => {
    const { server, drain, port } = await serve({ maxRequests: 0, maxAgeMs: 0 });
    const { get, close } = client(port);
    cleanup.push(close, () => server.close());
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await get());
    assert.equal(new Set(answers.map(({ via }) => via)).size, 1);
    assert.ok(answers.every(({ connection }) => connection === 'keep-alive'));
    assert.equal(drain.draining, false);
    drain.begin();
    assert.equal(drain.draining, true);
    const a = await get();
    const b = await get();
    assert.equal(a.connection, 'close');
    assert.equal(b.connection, 'close');
    assert.notEqual(a.via, b.via);
  });

  it('moves the close to the last of the requests pipelined behind the answer at the bound, so that every one is answered', async () => {
    // Answers take a while, as the service's do (Redis, Postgres): the pipelined requests arrive before the first answer is written.
    const { server, port } = await serve({ maxRequests: 1, maxAgeMs: 0 }, undefined, 30);
    cleanup.push(() => server.close());
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (chunk) => (received += chunk.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    const heads = received.split('HTTP/1.1 ').slice(1);
    assert.equal(heads.length, 3, `three answers:\n${received}`);
    assert.deepEqual(
      heads.map((head) => /^connection: (\S+)/im.exec(head)?.[1]?.toLowerCase() ?? 'none'),
      ['none', 'none', 'close'],
      'only the last answer closes the connection, which the server then ends',
    );
  });

  it('the app takes its bounds from HTTP_CONNECTION_MAX_REQUESTS, also for requests EMQX pipelines', async () => {
    const ctx = await createTestContext({ HTTP_CONNECTION_MAX_REQUESTS: '2', HTTP_CONNECTION_MAX_AGE_MS: '0' });
    try {
      const app = await ctx.app();
      await app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = app.server.address() as AddressInfo;
      const { get, close } = client(port);
      cleanup.push(close);
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await get());
      assert.deepEqual(answers.map(({ connection }) => connection), ['keep-alive', 'close', 'keep-alive', 'close']);

      // /readyz pings Postgres, Redis and Kafka: the requests behind the first arrive before its answer is written.
      const socket = net.connect(port, '127.0.0.1');
      let received = '';
      socket.on('data', (chunk) => (received += chunk.toString('latin1')));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(4));
      await closed;
      const heads = received.split('HTTP/1.1 ').slice(1);
      assert.equal(heads.length, 4, `every pipelined request answered:\n${received}`);
      assert.ok(heads.every((head) => head.startsWith('200')));
      assert.equal(heads.at(-1)?.match(/^connection: (\S+)/im)?.[1], 'close');
      assert.ok(heads.slice(0, -1).every((head) => !/^connection: close/im.test(head)), 'only the last answer closes');
    } finally {
      await ctx.close();
    }
  });
});

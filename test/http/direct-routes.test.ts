import assert from 'node:assert/strict';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { z } from 'zod';
import { createDirectRoutes, jsonRoute, type ReceivedBody } from '../../src/http/direct-routes.js';
import type { UnusableBody } from '../../src/lib/unusable-body.js';
import { BAD_HOOK_TOKEN, hookTokenCheck } from '../../src/http/hook-token.js';

const TOKEN = 'direct-route-token';
const AUTHORIZED = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

interface Answer {
  readonly status: number;
  readonly type: string | undefined;
  readonly retryAfter: string | undefined;
  /** content-length, and transfer-encoding when there is none. */
  readonly length: string | undefined;
  readonly body: string;
  readonly localPort: number | undefined;
}

describe('direct routes', () => {
  const refused: UnusableBody[] = [];
  const recorded: string[] = [];
  const logged: Record<string, unknown>[] = [];
  const handedToFastify: string[] = [];
  const received: ReceivedBody[] = [];
  let port: number;
  let server: http.Server;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  before(async () => {
    const { log } = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) } } });
    const direct = createDirectRoutes({
      authorized: hookTokenCheck([TOKEN]),
      unauthorized: BAD_HOOK_TOKEN,
      log,
      recorderFor: (route) => (method, status) => void recorded.push(`${method} ${route} ${status}`),
    });
    direct.add(
      jsonRoute({
      path: '/echo',
      body: z.object({ name: z.string(), fail: z.enum(['throw', 'reject', 'unavailable', 'nothing', 'unwritable']).optional(), later: z.boolean().default(false) }),
      bodyLimit: 64,
      answer: ({ name, fail, later }) => {
        if (fail === 'throw') throw new Error('the answer failed');
        if (fail === 'reject') return Promise.reject(new Error('the answer failed later'));
        if (fail === 'unavailable') return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
        if (fail === 'nothing') return Promise.reject(undefined);
        if (fail === 'unwritable') return Promise.resolve({ hello: name, count: 1n });
        return later ? Promise.resolve({ hello: name, later }) : { hello: name };
      },
      refusal: { result: 'deny' },
      refused: (reason) => void refused.push(reason),
      }),
    );
    // A route reading any body: what it received, answered 204 or 503 with a header.
    direct.add({
      path: '/raw',
      bodyLimit: 16,
      answer: (body) => {
        received.push(body);
        if (body.bytes.toString() === 'accepted') return { status: 202 };
        return body.complete ? { status: 204 } : { status: 503, body: { result: 'retry' }, headers: { 'retry-after': '1' } };
      },
    });
    server = http.createServer((request, response) => {
      if (direct.serve(request, response)) return;
      handedToFastify.push(`${request.method} ${request.url}`);
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    agent.destroy();
    server.close();
  });

  /** One request on the shared keep-alive connection; `chunks` given, the body goes chunked, one write per chunk. */
  function send(body: string, options: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; chunks?: number } = {}): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const chunked = options.chunks !== undefined;
      const request = http.request({
        host: '127.0.0.1',
        port,
        agent,
        method: options.method ?? 'POST',
        path: options.path ?? '/echo',
        headers: { ...(options.headers ?? AUTHORIZED), ...(chunked ? {} : { 'content-length': Buffer.byteLength(body) }) },
      });
      request.on('error', reject);
      // An answer that never comes fails the test rather than hanging it.
      request.setTimeout(5000, () => request.destroy(new Error('no answer within 5 s')));
      request.on('response', (response: IncomingMessage) => {
        const { localPort } = response.socket;
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            type: response.headers['content-type'],
            retryAfter: response.headers['retry-after'],
            length: response.headers['content-length'] ?? response.headers['transfer-encoding'],
            body: text,
            localPort,
          }),
        );
      });
      if (!chunked) return void request.end(body);
      const size = Math.ceil(body.length / (options.chunks as number));
      for (let offset = 0; offset < body.length; offset += size) request.write(body.slice(offset, offset + size));
      request.end();
    });
  }

  it('answers a usable body with the route answer as JSON, from memory or from a promise', async () => {
    const now = await send('{"name":"ada"}');
    assert.deepEqual([now.status, now.type, JSON.parse(now.body)], [200, 'application/json; charset=utf-8', { hello: 'ada' }]);
    const later = await send(JSON.stringify({ name: 'bob', later: true }), { chunks: 3 });
    assert.deepEqual([later.status, JSON.parse(later.body)], [200, { hello: 'bob', later: true }]);
    assert.equal(later.localPort, now.localPort, 'on one keep-alive connection');
  });

  it('answers a missing or wrong hook token 401 without reading the body, and the connection goes on', async () => {
    const first = await send('{"name":"ada"}');
    for (const headers of [{ 'content-type': 'application/json' }, { ...AUTHORIZED, authorization: `Bearer ${TOKEN}x` }]) {
      const answer = await send('{"name":"eve"}', { headers });
      assert.deepEqual([answer.status, JSON.parse(answer.body)], [401, BAD_HOOK_TOKEN]);
      assert.equal(answer.localPort, first.localPort);
    }
    assert.equal((await send('{"name":"ada"}')).status, 200);
  });

  it('answers every body it cannot use with the refusal, counted by reason, and keeps the connection', async () => {
    const cases: [string, string, http.OutgoingHttpHeaders, number | undefined, UnusableBody][] = [
      ['past the limit', JSON.stringify({ name: 'x'.repeat(100) }), AUTHORIZED, undefined, 'body_too_large'],
      ['past the limit, chunked, most of it after the answer', JSON.stringify({ name: 'x'.repeat(1_000_000) }), AUTHORIZED, 16, 'body_too_large'],
      ['not JSON', '{"name":', AUTHORIZED, undefined, 'invalid_body'],
      ['empty', '', AUTHORIZED, undefined, 'invalid_body'],
      ['not the shape', '{"name":7}', AUTHORIZED, undefined, 'invalid_body'],
      ['text/plain', '{"name":"ada"}', { ...AUTHORIZED, 'content-type': 'text/plain' }, undefined, 'invalid_body'],
      ['no content type', '{"name":"ada"}', { authorization: AUTHORIZED.authorization }, undefined, 'invalid_body'],
      ['application/json-seq', '{"name":"ada"}', { ...AUTHORIZED, 'content-type': 'application/json-seq' }, undefined, 'invalid_body'],
    ];
    const first = await send('{"name":"ada"}');
    for (const [what, body, headers, chunks, reason] of cases) {
      refused.length = 0;
      const answer = await send(body, { headers, ...(chunks === undefined ? {} : { chunks }) });
      assert.deepEqual([answer.status, answer.body, refused], [200, '{"result":"deny"}', [reason]], what);
      const next = await send('{"name":"ada"}');
      assert.equal(next.status, 200, what);
      assert.equal(next.localPort, first.localPort, `${what}: the next request went on the same connection`);
    }
    const typed = await send('{"name":"ada"}', { headers: { ...AUTHORIZED, 'content-type': 'Application/JSON; charset=utf-8' } });
    assert.equal(typed.status, 200, 'the media type is matched in any case, with parameters');
  });

  it("answers an error with the app's error body, and logs it with the request id it names", async () => {
    for (const [fail, status, code, level] of [
      ['throw', 500, 'internal_error', 50],
      ['reject', 500, 'internal_error', 50],
      ['unavailable', 503, 'unavailable', 40],
      ['nothing', 500, 'internal_error', 50],
      ['unwritable', 500, 'internal_error', 50],
    ] as const) {
      logged.length = 0;
      const answer = await send(JSON.stringify({ name: 'ada', fail }));
      const body = JSON.parse(answer.body) as { statusCode: number; code: string; requestId: string; message: string };
      assert.deepEqual([answer.status, body.statusCode, body.code], [status, status, code], fail);
      assert.doesNotMatch(body.message, /failed|refused/, 'no detail of a 5xx is answered');
      assert.equal(logged.length, 1, fail);
      assert.equal(logged[0]?.level, level, fail);
      assert.equal(logged[0]?.requestId, body.requestId, fail);
    }
  });

  it('gives a route any body with its size, whole up to the limit, and writes its status, headers and body', async () => {
    received.length = 0;
    const small = await send('not json at all', { path: '/raw', headers: { authorization: AUTHORIZED.authorization, 'content-type': 'text/plain' } });
    assert.deepEqual([small.status, small.body, small.type], [204, '', undefined]);
    const large = await send('x'.repeat(100_000), { path: '/raw', chunks: 7 });
    assert.deepEqual([large.status, JSON.parse(large.body), large.retryAfter], [503, { result: 'retry' }, '1']);
    assert.equal(large.localPort, small.localPort);
    const accepted = await send('accepted', { path: '/raw' });
    assert.deepEqual([accepted.status, accepted.body, accepted.length], [202, '', '0'], 'no body, said so rather than sent chunked');
    assert.deepEqual(
      received.map(({ bytes, size, complete, contentType }) => ({ text: bytes.toString(), size, complete, contentType })),
      [
        { text: 'not json at all', size: 15, complete: true, contentType: 'text/plain' },
        { text: 'x'.repeat(16), size: 100_000, complete: false, contentType: 'application/json' },
        { text: 'accepted', size: 8, complete: true, contentType: 'application/json' },
      ],
    );
  });

  it('records every answer under the route pattern, and leaves other methods and paths to the next handler', async () => {
    recorded.length = 0;
    handedToFastify.length = 0;
    await send('{"name":"ada"}');
    await send('{"name":"ada"}', { headers: { 'content-type': 'application/json' } });
    await send('{"name":"ada"}', { path: '/echo?x=1' });
    await send('', { method: 'GET' });
    await send('{"name":"ada"}', { path: '/other' });
    assert.deepEqual(recorded, ['POST /echo 200', 'POST /echo 401']);
    assert.deepEqual(handedToFastify, ['POST /echo?x=1', 'GET /echo', 'POST /other']);
  });
});

import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger } from 'fastify';
import type { z } from 'zod';
import { errorAnswer, logFailure } from './error-handler.js';
import type { RequestRecorder } from './metrics.js';
import { generateRequestId } from './request-id.js';

/** Why a body a direct route could not use was answered its refusal. */
export type UnusableBody = 'body_too_large' | 'invalid_body';

/** A POST route answered by Node's http module directly (see createDirectRoutes). */
export interface DirectRoute<Body> {
  /** The exact path; a URL with a query string goes through Fastify, which hands it back here. */
  readonly path: string;
  readonly body: z.ZodType<Body>;
  /** Bytes of body kept at most; a longer body is refused, and the rest of it dropped as it arrives. */
  readonly bodyLimit: number;
  /** The answer, sent as JSON with status 200. An error thrown or rejected gets the app's error answer. */
  answer(body: Body): unknown;
  /** Sent with status 200 for a body the route cannot use: too large, not JSON, another content type, not `body`'s shape. */
  readonly refusal: unknown;
  /** Counts each refusal by its reason. */
  refused(reason: UnusableBody): void;
}

export interface DirectRoutesOptions {
  /** True when the `Authorization` header may call these routes. */
  readonly authorized: (header: string | undefined) => boolean;
  /** Sent with status 401 when it may not; the body is not read. */
  readonly unauthorized: unknown;
  /** Where a failed answer is logged, as the app's error handler logs it. */
  readonly log: FastifyBaseLogger;
  /** The request metrics of one route pattern (src/http/metrics.ts). */
  readonly recorderFor: (route: string) => RequestRecorder;
}

export interface DirectRoutes {
  add<Body>(route: DirectRoute<Body>): void;
  /** Serves the request when it is one of the routes' (and returns true); false leaves it to Fastify. */
  serve(request: IncomingMessage, response: ServerResponse): boolean;
  /** Serves a request Fastify routed to `path` (tests' `inject`, a URL with a query string). */
  serveAt(path: string, request: IncomingMessage, response: ServerResponse): void;
}

interface Served {
  readonly route: DirectRoute<unknown>;
  readonly record: RequestRecorder;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Routes EMQX calls on every CONNECT and topic check, served straight from
 * Node's request and response: the hook token, the body read up to its
 * limit, JSON parsed and checked against the zod schema, the answer written
 * as JSON, the request metrics. Everything else goes to Fastify, which also
 * registers these routes (their OpenAPI document, and requests it receives
 * for them, which it hands back here), so there is one implementation.
 *
 * Fastify's request and reply objects, hooks, content-type parsers and
 * serializers cost more than the answer does on these paths, and they cost
 * more still in a process that serves many routes (its functions then see
 * many shapes). Measured against the same routes served by Fastify (npm run
 * bench, BENCH_COMPARE, 6 paired rounds): CPU per request 44.3 % lower on
 * /emqx/authz and 38.3 % lower on cached /emqx/authn.
 */
export function createDirectRoutes(options: DirectRoutesOptions): DirectRoutes {
  const { authorized, unauthorized, log, recorderFor } = options;
  const routes = new Map<string, Served>();
  const unauthorizedText = JSON.stringify(unauthorized);

  const serveRoute = ({ route, record }: Served, request: IncomingMessage, response: ServerResponse) => {
    const started = performance.now();
    const send = (status: number, text: string) => {
      response.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text) });
      response.end(text);
      record('POST', status, (performance.now() - started) / 1000);
    };
    const refuse = (reason: UnusableBody) => {
      route.refused(reason);
      send(200, JSON.stringify(route.refusal));
    };
    const fail = (error: unknown) => {
      const body = errorAnswer(error, generateRequestId());
      logFailure(log, error, body);
      send(body.statusCode, JSON.stringify(body));
    };
    const answer = (body: unknown) => {
      const parsed = route.body.safeParse(body);
      if (!parsed.success) return refuse('invalid_body');
      try {
        const answered = route.answer(parsed.data);
        if (answered instanceof Promise) answered.then((value) => send(200, JSON.stringify(value)), fail);
        else send(200, JSON.stringify(answered));
      } catch (error) {
        fail(error);
      }
    };

    // A body left unread is discarded by Node once the answer is written, so
    // the keep-alive connection EMQX holds stays usable.
    if (!authorized(request.headers.authorization)) return send(401, unauthorizedText);
    if (!isJson(request.headers['content-type'])) return refuse('invalid_body');

    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= route.bodyLimit) {
        chunks.push(chunk);
        return;
      }
      // Past the limit: the request stays flowing, so the rest is read and dropped.
      stop();
      refuse('body_too_large');
    };
    const onEnd = () => {
      stop();
      let body: unknown;
      try {
        body = JSON.parse((chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)).toString('utf8'));
      } catch {
        return refuse('invalid_body');
      }
      answer(body);
    };
    // The client went away mid-body: there is no one to answer.
    const onError = () => stop();
    const stop = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
    };
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
  };

  return {
    add(route) {
      routes.set(route.path, { route: route as DirectRoute<unknown>, record: recorderFor(route.path) });
    },
    serve(request, response) {
      if (request.method !== 'POST') return false;
      const served = routes.get(request.url as string);
      if (served === undefined) return false;
      serveRoute(served, request, response);
      return true;
    },
    serveAt(path, request, response) {
      const served = routes.get(path);
      if (served === undefined) throw new Error(`no direct route ${path}`);
      serveRoute(served, request, response);
    },
  };
}

/** `application/json`, with or without parameters, in any case; nothing else. */
function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const end = contentType.indexOf(';');
  return (end === -1 ? contentType : contentType.slice(0, end)).trim().toLowerCase() === 'application/json';
}

import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger, FastifyInstance, FastifySchema } from 'fastify';
import type { z } from 'zod';
import { errorAnswer, logFailure } from './error-handler.js';
import type { RequestRecorder } from './metrics.js';
import type { UnusableBody } from '../lib/unusable-body.js';
import { generateRequestId } from './request-id.js';

/** A request body as received: whole up to the route's limit; beyond it only its size is counted. */
export interface ReceivedBody {
  readonly bytes: Buffer;
  readonly size: number;
  /** False when the body was larger than the limit: `bytes` is its beginning only. */
  readonly complete: boolean;
  /** The request's content-type header. */
  readonly contentType: string | undefined;
}

/** What a direct route answers: a status, and a JSON body unless there is none. */
export interface DirectAnswer {
  readonly status: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A POST route answered by Node's http module directly (see createDirectRoutes). */
export interface DirectRoute {
  /** The exact path; a URL with a query string goes through Fastify, which hands it back here. */
  readonly path: string;
  /** Bytes of body kept at most. */
  readonly bodyLimit: number;
  /** Answers once the whole body has arrived. An error thrown or rejected gets the app's error answer. */
  answer(body: ReceivedBody): DirectAnswer | Promise<DirectAnswer>;
}

/**
 * A route that takes a JSON body of `body`'s shape and answers 200 with
 * `answer`'s value. A body it cannot use (too large, not JSON, another
 * content type, not the shape) is answered 200 with `refusal`, counted by
 * its reason.
 */
export function jsonRoute<Body>(route: {
  path: string;
  body: z.ZodType<Body>;
  bodyLimit: number;
  answer: (body: Body) => unknown;
  refusal: unknown;
  refused: (reason: UnusableBody) => void;
}): DirectRoute {
  const refuse = (reason: UnusableBody): DirectAnswer => {
    route.refused(reason);
    return { status: 200, body: route.refusal };
  };
  const answered = (value: unknown): DirectAnswer => ({ status: 200, body: value });
  return {
    path: route.path,
    bodyLimit: route.bodyLimit,
    answer({ bytes, complete, contentType }) {
      if (!complete) return refuse('body_too_large');
      if (!isJson(contentType)) return refuse('invalid_body');
      let value: unknown;
      try {
        value = JSON.parse(bytes.toString('utf8'));
      } catch {
        return refuse('invalid_body');
      }
      const parsed = route.body.safeParse(value);
      if (!parsed.success) return refuse('invalid_body');
      const answer = route.answer(parsed.data);
      return answer instanceof Promise ? answer.then(answered) : answered(answer);
    },
  };
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
  add(route: DirectRoute): void;
  /** Serves the request when it is one of the routes' (and returns true); false leaves it to Fastify. */
  serve(request: IncomingMessage, response: ServerResponse): boolean;
  /** Serves a request Fastify routed to `path` (tests' `inject`, a URL with a query string). */
  serveAt(path: string, request: IncomingMessage, response: ServerResponse): void;
}

interface Served {
  readonly route: DirectRoute;
  readonly record: RequestRecorder;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Routes EMQX calls on every CONNECT, topic check and event, served straight
 * from Node's request and response: the hook token, the body read up to the
 * route's limit, its answer written as JSON, the request metrics, and the
 * app's error answer for an error. Everything else goes to Fastify, which
 * also registers these routes (their OpenAPI document, and requests it
 * receives for them, which it hands back here), so there is one
 * implementation.
 *
 * Fastify's request and reply objects, hooks, content-type parsers and
 * serializers cost more than the answer does on these paths, and they cost
 * more still in a process that serves many routes (its functions then see
 * many shapes). Measured against the same routes served by Fastify (npm run
 * bench, BENCH_COMPARE, 6 paired rounds each): CPU per request 44.3 % lower
 * on /emqx/authz, 38.3 % on cached /emqx/authn, 18.4 % per telemetry event
 * and 11.1 % per command created → acked.
 */
export function createDirectRoutes(options: DirectRoutesOptions): DirectRoutes {
  const { authorized, unauthorized, log, recorderFor } = options;
  const routes = new Map<string, Served>();

  const serveRoute = ({ route, record }: Served, request: IncomingMessage, response: ServerResponse) => {
    const started = performance.now();
    const send = ({ status, body, headers }: DirectAnswer) => {
      if (body === undefined) {
        // A 204 has no body by definition; any other status says it has none, rather than being sent chunked.
        response.writeHead(status, status === 204 ? headers : { ...headers, 'content-length': 0 });
        response.end();
      } else {
        const text = JSON.stringify(body);
        response.writeHead(status, { ...headers, 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text) });
        response.end(text);
      }
      record('POST', status, (performance.now() - started) / 1000);
    };
    // Never throws: an error that cannot be answered any more ends the connection instead.
    const fail = (error: unknown) => {
      const body = errorAnswer(error, generateRequestId());
      logFailure(log, error, body);
      if (response.headersSent) response.destroy();
      else send({ status: body.statusCode, body });
    };
    const answerWith = (answer: DirectAnswer) => {
      try {
        send(answer);
      } catch (error) {
        fail(error);
      }
    };

    // A body left unread is discarded by Node once the answer is written, so
    // the keep-alive connection EMQX holds stays usable.
    if (!authorized(request.headers.authorization)) return send({ status: 401, body: unauthorized });

    const chunks: Buffer[] = [];
    let kept = 0;
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (kept >= route.bodyLimit) return;
      const part = kept + chunk.length > route.bodyLimit ? chunk.subarray(0, route.bodyLimit - kept) : chunk;
      chunks.push(part);
      kept += part.length;
    };
    const stop = () => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onError);
    };
    const onEnd = () => {
      stop();
      const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, kept);
      let answer: DirectAnswer | Promise<DirectAnswer>;
      try {
        answer = route.answer({ bytes, size, complete: size <= route.bodyLimit, contentType: request.headers['content-type'] });
      } catch (error) {
        return fail(error);
      }
      if (answer instanceof Promise) answer.then(answerWith, fail);
      else answerWith(answer);
    };
    // The client went away mid-body: there is no one to answer.
    const onError = () => stop();
    request.on('data', onData);
    request.on('end', onEnd);
    request.on('error', onError);
  };

  return {
    add(route) {
      routes.set(route.path, { route, record: recorderFor(route.path) });
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

/**
 * Adds `route` to the direct routes, and to Fastify with `schema`: its
 * OpenAPI document, and a route that hands every request it receives (before
 * reading the body) to the direct route.
 */
export function addDirectRoute(app: FastifyInstance, direct: DirectRoutes, route: DirectRoute, schema: FastifySchema) {
  direct.add(route);
  app.post(
    route.path,
    {
      schema,
      config: { servedDirectly: true },
      // Only failures are logged, as on the direct path: one info line per CONNECT would swamp the log.
      logLevel: 'warn',
      // Hijacked, the request leaves Fastify's lifecycle here: `done` is
      // never called, the body is still unread, and the direct route answers.
      onRequest: (request, reply) => {
        reply.hijack();
        direct.serveAt(route.path, request.raw, reply.raw);
      },
    },
    () => {
      throw new Error(`${route.path} was answered by Fastify, not handed to its direct route`);
    },
  );
}

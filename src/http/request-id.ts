import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The `x-request-id` the client sent, when it is usable (see
     * clientRequestIdOf); never the request's own id, which the service
     * generates, so a client cannot choose what the audit log and the logs
     * correlate on.
     */
    readonly clientRequestId: string | null;
  }
}

export const REQUEST_ID_HEADER = 'x-request-id';

/** Longest client request id kept; a longer one is dropped, not cut, so a kept id is always whole. */
const CLIENT_REQUEST_ID_MAX = 128;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;

/**
 * Unique across replicas and restarts, unlike fastify's per-process counter,
 * so an audit entry's request id names one request: 96 random bits drawn
 * once per process, then a counter, so that no request pays a random draw.
 */
const PROCESS_PREFIX = randomBytes(12).toString('hex');
let sequence = 0;
export const generateRequestId = (): string => `${PROCESS_PREFIX}-${(++sequence).toString(36)}`;

/**
 * A client's `x-request-id`, if it is at most 128 printable ASCII characters
 * and not blank; otherwise null. It goes into log lines and the audit log,
 * where control characters or unbounded text have no place.
 */
export function clientRequestIdOf(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string' || header.length > CLIENT_REQUEST_ID_MAX) return null;
  if (!PRINTABLE_ASCII.test(header) || header.trim() === '') return null;
  return header;
}

/**
 * Logs each request's client id beside the service's (`client_request_id`),
 * and exposes it as `request.clientRequestId`. The EMQX routes are served
 * ahead of Fastify (src/http/direct-routes.ts) and log their failures only.
 */
export function registerClientRequestId(app: FastifyInstance) {
  app.decorateRequest('clientRequestId', {
    // Read from the header when asked: most requests never ask.
    getter(this: { raw: IncomingMessage }) {
      return clientRequestIdOf(this.raw.headers[REQUEST_ID_HEADER]);
    },
  });
  app.setChildLoggerFactory((logger: FastifyBaseLogger, bindings, options, rawRequest) => {
    const clientRequestId = clientRequestIdOf((rawRequest as IncomingMessage).headers[REQUEST_ID_HEADER]);
    return logger.child(clientRequestId === null ? bindings : { ...bindings, client_request_id: clientRequestId }, options);
  });
}

/**
 * Answers every request of the (encapsulated) context with its id in
 * `x-request-id`: the id its audit entry and log lines carry.
 */
export function answerRequestId(app: FastifyInstance) {
  app.addHook('onRequest', (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });
}

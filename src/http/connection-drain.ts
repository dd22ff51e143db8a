import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export interface ConnectionLimits {
  /** Answers after which a keep-alive connection is closed; 0 = no bound. */
  readonly maxRequests: number;
  /** Age (from its first request) after which a keep-alive connection is closed; 0 = no bound. */
  readonly maxAgeMs: number;
}

export interface ConnectionDrain {
  /** True once begin() was called: the process is shutting down. */
  readonly draining: boolean;
  /** From now on every answer closes its connection. */
  begin(): void;
}

const SERVED = Symbol('answers on this connection');
const OPENED = Symbol('first request on this connection');
const CLOSING = Symbol('the answer that closes this connection');

interface TrackedSocket {
  [SERVED]?: number;
  [OPENED]?: number;
  [CLOSING]?: ServerResponse;
}

/**
 * Ends keep-alive connections gracefully: the answer that reaches a bound
 * carries `Connection: close`, so the client opens a new connection (which
 * the Service may give to another replica) instead of finding a closed one.
 * EMQX keeps a pool of long-lived connections per node: without a bound, the
 * replicas added by a scale-up would get none of them; while draining, every
 * connection leaves with its next answer, before the listener closes.
 *
 * A request pipelined behind the closing answer would not be answered (the
 * connection closes after that answer), so when one arrives before that
 * answer is written, the close moves to the newcomer's answer. Node's own
 * `maxRequestsPerSocket` is not used: it answers 503 to requests pipelined
 * past the limit, which EMQX reads as `ignore`.
 */
export function registerConnectionDrain(server: Server, limits: ConnectionLimits, now: () => number = Date.now): ConnectionDrain {
  let draining = false;
  const { maxRequests, maxAgeMs } = limits;
  const closeWith = (socket: TrackedSocket, response: ServerResponse) => {
    socket[CLOSING] = response;
    response.setHeader('connection', 'close');
  };
  // Before the app's own listener, so that the header is set before any answer is written.
  server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket as typeof request.socket & TrackedSocket;
    const closing = socket[CLOSING];
    if (closing) {
      // Pipelined behind the answer meant to be the last: that one stays open if it can still change.
      if (!closing.headersSent) {
        closing.removeHeader('connection');
        closeWith(socket, response);
      }
      return;
    }
    if (draining) {
      closeWith(socket, response);
      return;
    }
    if (maxRequests === 0 && maxAgeMs === 0) return;
    const served = (socket[SERVED] ?? 0) + 1;
    socket[SERVED] = served;
    let bounded = maxRequests > 0 && served >= maxRequests;
    if (!bounded && maxAgeMs > 0) {
      const at = now();
      const opened = (socket[OPENED] ??= at);
      bounded = at - opened >= maxAgeMs;
    }
    if (bounded) closeWith(socket, response);
  });
  return {
    get draining() {
      return draining;
    },
    begin() {
      draining = true;
    },
  };
}

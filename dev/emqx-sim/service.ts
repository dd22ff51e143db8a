import { Pool } from 'undici';
import type { RenderedRequest } from './templates.js';

/** The service's answer to one request EMQX sent it. */
export interface HttpAnswer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/**
 * How a request rendered from emqx.conf reaches the service: over HTTP (the
 * local run, the soak, the bench) or into an app that is not listening (the
 * tests). Rejects when there is no answer (a connection error, or `signal`
 * aborted: a timeout or the simulation closing).
 */
export type ServiceTransport = (request: RenderedRequest, signal: AbortSignal) => Promise<HttpAnswer>;

/**
 * How EMQX holds its connections to an HTTP resource (an authenticator, an
 * authorization source, a connector): a pool of 8, with up to 100 requests
 * pipelined on each (`pool_size`, `enable_pipelining`).
 */
export const EMQX_HTTP_POOL = { connections: 8, pipelining: 100 } as const;

/**
 * The service at `serviceUrl`, over a pool of connections of its own held as
 * EMQX holds one (EMQX_HTTP_POOL). The configuration names the service by its
 * compose host (`http://device-link:8080`); here the path goes to
 * `serviceUrl` instead, as if that name resolved to it.
 *
 * Requests are pipelined whatever their method, as EMQX pipelines its POSTs.
 * When a connection drops, the requests written on it after the first one
 * without an answer are sent again on another: the service sees them twice,
 * as it may from EMQX, which retries the requests of a lost connection.
 */
export function httpTransport(serviceUrl: string): ServiceTransport {
  const pool = new Pool(new URL(serviceUrl).origin, EMQX_HTTP_POOL);
  return async (request, signal) => {
    const url = new URL(request.url, serviceUrl);
    const response = await pool.request({
      path: `${url.pathname}${url.search}`,
      method: request.method,
      headers: request.headers,
      ...(request.method === 'GET' ? {} : { body: request.body }),
      // undici pipelines only requests it may repeat, and none behind a request
      // it expects to answer slowly (any but HEAD); EMQX pipelines every request.
      idempotent: true,
      blocking: false,
      signal,
    });
    const type = response.headers['content-type'];
    return { status: response.statusCode, contentType: (Array.isArray(type) ? type[0] : type) ?? '', body: await response.body.text() };
  };
}

/** One request within `timeoutMs`, also when the transport itself cannot be aborted. */
export async function callService(transport: ServiceTransport, request: RenderedRequest, timeoutMs: number, stop?: AbortSignal): Promise<HttpAnswer> {
  const signal = stop ? AbortSignal.any([AbortSignal.timeout(timeoutMs), stop]) : AbortSignal.timeout(timeoutMs);
  signal.throwIfAborted();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([transport(request, signal), aborted]);
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

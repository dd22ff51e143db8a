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
 * The service at `serviceUrl`. The configuration names the service by its
 * compose host (`http://device-link:8080`); here the path goes to
 * `serviceUrl` instead, as if that name resolved to it.
 */
export function httpTransport(serviceUrl: string): ServiceTransport {
  return async (request, signal) => {
    const response = await fetch(new URL(request.url, serviceUrl), {
      method: request.method,
      headers: request.headers,
      ...(request.method === 'GET' ? {} : { body: request.body }),
      signal,
    });
    return { status: response.status, contentType: response.headers.get('content-type') ?? '', body: await response.text() };
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

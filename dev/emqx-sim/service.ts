import type { RenderedRequest } from './templates.js';
import type { HttpAnswer } from './auth-answers.js';

/**
 * Sends a request rendered from emqx.conf to the service. The configuration
 * names the service by its compose host (`http://device-link:8080`); here the
 * path goes to `serviceUrl` instead, as if that name resolved to it.
 * Rejects on a connection error or when `timeoutMs` passes.
 */
export async function sendToService(
  serviceUrl: string,
  request: RenderedRequest,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<HttpAnswer> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const response = await fetch(new URL(request.url, serviceUrl), {
    method: request.method,
    headers: request.headers,
    ...(request.method === 'GET' ? {} : { body: request.body }),
    signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
  });
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body: await response.text() };
}

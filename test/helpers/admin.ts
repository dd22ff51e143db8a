import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { TEST_ADMIN_TOKEN } from './env.js';

export interface AdminClient {
  get(url: string): Promise<LightMyRequestResponse>;
  post(url: string, body?: unknown): Promise<LightMyRequestResponse>;
  put(url: string, body?: unknown): Promise<LightMyRequestResponse>;
  patch(url: string, body?: unknown): Promise<LightMyRequestResponse>;
  delete(url: string): Promise<LightMyRequestResponse>;
}

/** Calls the admin API the way an operator's HTTP client would. */
export function adminClient(app: FastifyInstance, token: string | null = TEST_ADMIN_TOKEN): AdminClient {
  const headers = token === null ? {} : { authorization: `Bearer ${token}` };
  const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown) =>
    app.inject({ method, url, headers, ...(body !== undefined ? { payload: body as object } : {}) });
  return {
    get: (url) => call('GET', url),
    post: (url, body) => call('POST', url, body),
    put: (url, body) => call('PUT', url, body),
    patch: (url, body) => call('PATCH', url, body),
    delete: (url) => call('DELETE', url),
  };
}

/** Collects the app's log lines so tests can assert what never reaches them. */
export function logCapture() {
  const lines: string[] = [];
  return { lines, stream: { write: (line: string) => void lines.push(line) }, text: () => lines.join('') };
}

import { createServer, type Server } from 'node:http';

export interface RecordedCall {
  readonly method: string;
  readonly path: string;
  /** The client id, URL-decoded. */
  readonly clientId: string | null;
  readonly authorized: boolean;
}

export interface EmqxStandIn {
  readonly url: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly calls: RecordedCall[];
  /** Marks a client as known to EMQX (connected or an offline persistent session). */
  setClient(clientId: string, connected: boolean): void;
  removeClient(clientId: string): void;
  /** Makes every request fail with this status (null = normal answers). */
  failWith(status: number | null): void;
  close(): Promise<void>;
}

/**
 * A local HTTP server answering like EMQX's REST API (emqx-contract.md §D):
 * Basic auth checked; `GET /api/v5/clients/{id}` → 200 {connected, ...} or
 * 404; `DELETE /api/v5/clients/{id}` → 204 (and the client is gone) or 404.
 */
export async function startEmqxStandIn(apiKey = 'stand-in-key', apiSecret = 'stand-in-secret'): Promise<EmqxStandIn> {
  const clients = new Map<string, boolean>();
  const calls: RecordedCall[] = [];
  let failure: number | null = null;
  const expected = `Basic ${Buffer.from(`${apiKey}:${apiSecret}`).toString('base64')}`;

  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0] ?? '';
    const match = /^\/api\/v5\/clients\/([^/]+)$/.exec(path);
    const clientId = match?.[1] ? decodeURIComponent(match[1]) : null;
    const authorized = request.headers.authorization === expected;
    calls.push({ method: request.method ?? '', path, clientId, authorized });
    const send = (status: number, body?: object) => {
      response.writeHead(status, body ? { 'content-type': 'application/json' } : {});
      response.end(body ? JSON.stringify(body) : undefined);
    };
    if (!authorized) return send(401, { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' });
    if (failure !== null) return send(failure, { code: 'INTERNAL_ERROR', message: 'failing on purpose' });
    if (clientId === null) return send(404, { code: 'NOT_FOUND', message: 'no such route' });
    const connected = clients.get(clientId);
    if (request.method === 'GET') {
      if (connected === undefined) return send(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
      return send(200, { clientid: clientId, connected, connected_at: '2026-01-01T00:00:00.000+00:00', ip_address: '10.0.0.1' });
    }
    if (request.method === 'DELETE') {
      if (connected === undefined) return send(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
      clients.delete(clientId);
      return send(204);
    }
    return send(405, { code: 'METHOD_NOT_ALLOWED', message: 'method not allowed' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    apiSecret,
    calls,
    setClient: (clientId, connected) => void clients.set(clientId, connected),
    removeClient: (clientId) => void clients.delete(clientId),
    failWith(status) {
      failure = status;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The config overrides that point an app at the stand-in. */
export function standInEnv(standIn: EmqxStandIn): Record<string, string> {
  return { EMQX_API_URL: standIn.url, EMQX_API_KEY: standIn.apiKey, EMQX_API_SECRET: standIn.apiSecret };
}

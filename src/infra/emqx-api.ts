import { withTimeout } from '../lib/with-timeout.js';

/** What `GET /api/v5/clients/{id}` tells about a client (emqx-contract.md §D). */
export interface EmqxClientInfo {
  readonly connected: boolean;
  /** As EMQX renders it (RFC 3339), when present. */
  readonly connectedAt?: string;
}

export interface EmqxApi {
  /** The client, or null when EMQX does not know it (404). Throws when EMQX cannot be asked. */
  getClient(clientId: string): Promise<EmqxClientInfo | null>;
  /** Disconnects the client: `kicked` (204) or `not_found` (404). Throws on anything else. */
  kickClient(clientId: string): Promise<'kicked' | 'not_found'>;
}

export interface EmqxApiOptions {
  readonly apiUrl: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly apiTimeoutMs: number;
}

export class EmqxApiError extends Error {
  override name = 'EmqxApiError';
  constructor(
    readonly operation: string,
    readonly status: number | null,
  ) {
    super(status === null ? `EMQX ${operation} failed` : `EMQX ${operation} answered ${status}`);
  }
}

/** EMQX's REST API (`/api/v5`), HTTP Basic with an API key and secret. */
export function createEmqxApi(options: EmqxApiOptions, fetchImpl: typeof fetch = fetch): EmqxApi {
  const authorization = `Basic ${Buffer.from(`${options.apiKey}:${options.apiSecret}`).toString('base64')}`;
  // Client ids are arbitrary strings in MQTT; a "/" or "?" must not change the path.
  const clientUrl = (clientId: string) => `${options.apiUrl}/api/v5/clients/${encodeURIComponent(clientId)}`;

  async function call(operation: string, url: string, method: 'GET' | 'DELETE'): Promise<Response> {
    const controller = new AbortController();
    try {
      return await withTimeout(
        fetchImpl(url, { method, headers: { authorization, accept: 'application/json' }, signal: controller.signal }),
        options.apiTimeoutMs,
        `EMQX ${operation}`,
      );
    } catch (error) {
      controller.abort();
      throw Object.assign(new EmqxApiError(operation, null), { cause: error });
    }
  }

  return {
    async getClient(clientId) {
      const response = await call('get client', clientUrl(clientId), 'GET');
      if (response.status === 404) {
        await response.body?.cancel();
        return null;
      }
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new EmqxApiError('get client', response.status);
      }
      const body = (await response.json()) as { connected?: unknown; connected_at?: unknown };
      // An offline persistent session is 200 with connected: false, so the field decides, not the status.
      return {
        connected: body.connected === true,
        ...(typeof body.connected_at === 'string' ? { connectedAt: body.connected_at } : {}),
      };
    },
    async kickClient(clientId) {
      const response = await call('kick client', clientUrl(clientId), 'DELETE');
      await response.body?.cancel();
      if (response.status === 204) return 'kicked';
      if (response.status === 404) return 'not_found';
      throw new EmqxApiError('kick client', response.status);
    },
  };
}

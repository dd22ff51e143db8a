import { TimeoutError, withTimeout } from '../lib/with-timeout.js';

/** What `GET /api/v5/clients/{id}` tells about a client (docs/emqx-contract.md §D). */
export interface EmqxClientInfo {
  readonly connected: boolean;
  /** As EMQX renders it (RFC 3339), when present. */
  readonly connectedAt?: string;
}

/** One message for `POST /api/v5/publish` (docs/emqx-contract.md §F). */
export interface EmqxPublishRequest {
  readonly topic: string;
  /** Sent as text (payload_encoding plain). */
  readonly payload: string;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  /** MQTT 5 Message-Expiry-Interval in seconds; EMQX drops the message once it has waited this long. */
  readonly messageExpiryIntervalS?: number;
  readonly userProperties?: Readonly<Record<string, string>>;
  /** MQTT 5 request/response: where the receiver answers, and what its answer carries back. */
  readonly responseTopic?: string;
  readonly correlationData?: string;
}

export type EmqxPublishResult =
  /** 200: handed to at least one subscriber's session (not proof that the device has it). */
  | { readonly kind: 'handed'; readonly id: string | null }
  /** 202 (reason code 16): nobody is subscribed; nothing was queued. */
  | { readonly kind: 'no_subscriber' }
  /** 400: EMQX refuses this message as it is (bad topic, too large); sending it again cannot help. */
  | { readonly kind: 'refused'; readonly status: number; readonly message: string };

/** One message's outcome in a bulk publish: as a single publish, or 503's `failed_to_dispatch` for it alone. */
export type EmqxBulkItemResult = EmqxPublishResult | { readonly kind: 'failed'; readonly status: number };

/**
 * `POST /api/v5/publish/bulk`: one result per message, in order; or
 * `refused` when EMQX validated the messages and refused the whole call (one
 * of them is invalid: 400, nothing was published).
 */
export type EmqxBulkResult = { readonly kind: 'items'; readonly items: readonly EmqxBulkItemResult[] } | { readonly kind: 'refused'; readonly message: string };

export interface EmqxApi {
  /** The client, or null when EMQX does not know it (404). Throws when EMQX cannot be asked. */
  getClient(clientId: string): Promise<EmqxClientInfo | null>;
  /** Disconnects the client: `kicked` (204) or `not_found` (404). Throws on anything else. */
  kickClient(clientId: string): Promise<'kicked' | 'not_found'>;
  /**
   * Publishes one message. Throws an EmqxApiError on 503 (failed to dispatch),
   * any other unexpected status, a timeout or a connection error; its
   * `ambiguous` says whether EMQX may have taken the message all the same.
   */
  publish(message: EmqxPublishRequest): Promise<EmqxPublishResult>;
  /**
   * Publishes messages in one call (at least one). EMQX answers 200 when all
   * reached a subscriber, 202 when some reached none, 503 when some failed to
   * dispatch — always with one result per message, read item by item. Throws
   * like `publish` for anything else (a timeout: every message may be out).
   */
  publishBulk(messages: readonly EmqxPublishRequest[]): Promise<EmqxBulkResult>;
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
    /** No answer came, but the request may have reached EMQX (a timeout, a connection lost after sending). */
    readonly ambiguous = false,
  ) {
    super(status === null ? `EMQX ${operation} failed` : `EMQX ${operation} answered ${status}`);
  }
}

/** A connection that was never made: the request cannot have reached EMQX. */
function neverConnected(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const { code } = current as { code?: unknown };
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT') return true;
  }
  return false;
}

/** EMQX's REST API (`/api/v5`), HTTP Basic with an API key and secret. */
export function createEmqxApi(options: EmqxApiOptions, fetchImpl: typeof fetch = fetch): EmqxApi {
  const authorization = `Basic ${Buffer.from(`${options.apiKey}:${options.apiSecret}`).toString('base64')}`;
  // Client ids are arbitrary strings in MQTT; a "/" or "?" must not change the path.
  const clientUrl = (clientId: string) => `${options.apiUrl}/api/v5/clients/${encodeURIComponent(clientId)}`;

  async function call(operation: string, url: string, method: 'GET' | 'DELETE' | 'POST', body?: object): Promise<Response> {
    const controller = new AbortController();
    const headers: Record<string, string> = { authorization, accept: 'application/json' };
    if (body) headers['content-type'] = 'application/json';
    try {
      return await withTimeout(
        fetchImpl(url, { method, headers, signal: controller.signal, ...(body ? { body: JSON.stringify(body) } : {}) }),
        options.apiTimeoutMs,
        `EMQX ${operation}`,
      );
    } catch (error) {
      controller.abort();
      const ambiguous = error instanceof TimeoutError || !neverConnected(error);
      throw Object.assign(new EmqxApiError(operation, null, ambiguous), { cause: error });
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
    async publish(message) {
      const response = await call('publish', `${options.apiUrl}/api/v5/publish`, 'POST', publishBody(message));
      const text = await response.text().catch(() => '');
      if (response.status === 200) {
        const id = parseJson(text)?.id;
        return { kind: 'handed', id: typeof id === 'string' && id !== '' ? id : null };
      }
      // 202 carries no id: the message reached no subscriber and is gone.
      if (response.status === 202) return { kind: 'no_subscriber' };
      if (response.status === 400) {
        const reason = parseJson(text)?.message;
        return { kind: 'refused', status: 400, message: typeof reason === 'string' ? reason.slice(0, 200) : 'bad request' };
      }
      throw new EmqxApiError('publish', response.status);
    },
    async publishBulk(messages) {
      const response = await call('bulk publish', `${options.apiUrl}/api/v5/publish/bulk`, 'POST', messages.map(publishBody));
      const text = await response.text().catch(() => '');
      if (response.status === 400) {
        const reason = parseJson(text)?.message;
        return { kind: 'refused', message: typeof reason === 'string' ? reason.slice(0, 200) : 'bad request' };
      }
      let body: unknown = null;
      try {
        body = JSON.parse(text);
      } catch {
        // Checked below.
      }
      if (![200, 202, 503].includes(response.status) || !Array.isArray(body) || body.length !== messages.length) {
        // An answer that is not one result per message tells nothing about any of them.
        throw new EmqxApiError('bulk publish', response.status, response.status === 200 || response.status === 202);
      }
      return { kind: 'items', items: body.map(bulkItem) };
    },
  };
}

/** The REST body of one message. */
function publishBody(message: EmqxPublishRequest): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  if (message.messageExpiryIntervalS !== undefined) properties.message_expiry_interval = message.messageExpiryIntervalS;
  if (message.userProperties) properties.user_properties = message.userProperties;
  if (message.responseTopic !== undefined) properties.response_topic = message.responseTopic;
  if (message.correlationData !== undefined) properties.correlation_data = message.correlationData;
  // qos and retain are always sent: EMQX's defaults (QoS 0) would make the
  // message fire-and-forget, with no acknowledgement to track.
  return {
    topic: message.topic,
    payload: message.payload,
    payload_encoding: 'plain',
    qos: message.qos,
    retain: message.retain,
    ...(Object.keys(properties).length > 0 ? { properties } : {}),
  };
}

/** EMQX_RC_NO_MATCHING_SUBSCRIBERS: the one reason code of an item that reached nobody. */
const NO_MATCHING_SUBSCRIBERS = 16;

/** One item of a bulk answer: `{id}` handed over, `{reason_code: 16}` nobody subscribed, any other reason failed to dispatch. */
function bulkItem(item: unknown): EmqxBulkItemResult {
  const fields = item !== null && typeof item === 'object' ? (item as Record<string, unknown>) : {};
  if (typeof fields.id === 'string' && fields.id !== '') return { kind: 'handed', id: fields.id };
  if (fields.reason_code === NO_MATCHING_SUBSCRIBERS) return { kind: 'no_subscriber' };
  return { kind: 'failed', status: 503 };
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { BrokerLog } from './log.js';
import { messageId, type OfflineSession, type Session } from './sessions.js';

/** A message the REST API publishes: validated, with its answer's id. */
export interface ApiMessage {
  readonly id: string;
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly expiryIntervalS?: number;
  /** What rules see as `pub_props`. */
  readonly pubProps: Record<string, unknown>;
}

export interface RestApiOptions {
  readonly host: string;
  readonly port: number;
  readonly key: string;
  readonly secret: string;
  readonly node: string;
  readonly live: ReadonlyMap<string, Session>;
  readonly offline: ReadonlyMap<string, OfflineSession>;
  kick(session: Session): void;
  discard(clientid: string): void;
  /** Routes the message; false when nobody is subscribed to receive it. */
  publish(message: ApiMessage): boolean;
  readonly log: BrokerLog;
}

export interface RestApi {
  readonly url: string;
  close(): Promise<void>;
}

/** EMQX's `mqtt.max_packet_size` default. */
const MAX_PAYLOAD_BYTES = 1024 * 1024;

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: object,
  ) {
    super(JSON.stringify(body));
  }
}

const invalidTopic = () => new ApiError(400, { reason_code: 144, message: 'topic_name_invalid' });

function validTopicName(topic: unknown): topic is string {
  return typeof topic === 'string' && topic !== '' && !/[+#\0]/.test(topic) && Buffer.byteLength(topic) <= 65535;
}

function readMessage(body: unknown): ApiMessage {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, { code: 'BAD_REQUEST', message: 'the body is not a JSON object' });
  const fields = body as Record<string, unknown>;
  if (!validTopicName(fields.topic)) throw invalidTopic();
  const encoding = fields.payload_encoding ?? 'plain';
  if (encoding !== 'plain' && encoding !== 'base64') throw new ApiError(400, { code: 'BAD_REQUEST', message: 'payload_encoding: plain or base64' });
  if (typeof fields.payload !== 'string') throw new ApiError(400, { code: 'BAD_REQUEST', message: 'payload: a string is required' });
  if (encoding === 'base64' && !/^[A-Za-z0-9+/]*={0,2}$/.test(fields.payload)) {
    throw new ApiError(400, { reason_code: 131, message: 'failed_to_decode_base64' });
  }
  const payload = Buffer.from(fields.payload, encoding === 'base64' ? 'base64' : 'utf8');
  if (payload.length > MAX_PAYLOAD_BYTES) throw new ApiError(400, { reason_code: 151, message: 'packet_too_large' });
  // EMQX's defaults: QoS 0, not retained.
  const qos = fields.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new ApiError(400, { code: 'BAD_REQUEST', message: 'qos: 0, 1 or 2' });
  const retain = fields.retain ?? false;
  if (typeof retain !== 'boolean') throw new ApiError(400, { code: 'BAD_REQUEST', message: 'retain: a boolean' });
  const properties = (fields.properties ?? {}) as Record<string, unknown>;
  const pubProps: Record<string, unknown> = {};
  if (properties.user_properties !== undefined) pubProps['User-Property'] = properties.user_properties;
  if (properties.correlation_data !== undefined) pubProps['Correlation-Data'] = properties.correlation_data;
  if (properties.response_topic !== undefined) pubProps['Response-Topic'] = properties.response_topic;
  if (properties.content_type !== undefined) pubProps['Content-Type'] = properties.content_type;
  const expiry = properties.message_expiry_interval;
  if (expiry !== undefined && (typeof expiry !== 'number' || !Number.isInteger(expiry) || expiry < 0)) {
    throw new ApiError(400, { code: 'BAD_REQUEST', message: 'properties.message_expiry_interval: seconds' });
  }
  if (expiry !== undefined) pubProps['Message-Expiry-Interval'] = expiry;
  return { id: messageId(), topic: fields.topic, payload, qos, retain, ...(expiry !== undefined ? { expiryIntervalS: expiry } : {}), pubProps };
}

/**
 * The part of EMQX's REST API (`/api/v5`, HTTP Basic with an API key) that
 * the service calls (docs/emqx-contract.md §D, §F): look a client up, kick it,
 * publish to a topic.
 */
export async function startRestApi(options: RestApiOptions): Promise<RestApi> {
  const expected = Buffer.from(`Basic ${Buffer.from(`${options.key}:${options.secret}`).toString('base64')}`);
  const { live, offline } = options;

  function authorized(request: IncomingMessage): boolean {
    const given = Buffer.from(request.headers.authorization ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  function clientInfo(clientid: string): object | null {
    const session = live.get(clientid);
    if (session) {
      return {
        clientid,
        username: session.username,
        connected: true,
        connected_at: new Date(session.connectedAt).toISOString(),
        ip_address: session.peerhost,
        port: Number(session.peername.slice(session.peername.lastIndexOf(':') + 1)),
        proto_name: 'MQTT',
        proto_ver: session.client.version,
        keepalive: session.keepalive,
        clean_start: session.cleanStart,
        subscriptions_cnt: session.subscriptions.size,
        node: options.node,
      };
    }
    const kept = offline.get(clientid);
    if (kept) {
      return {
        clientid,
        username: kept.username,
        connected: false,
        connected_at: new Date(kept.connectedAt).toISOString(),
        disconnected_at: new Date(kept.disconnectedAt).toISOString(),
        clean_start: false,
        subscriptions_cnt: kept.subscriptions.size,
        node: options.node,
      };
    }
    return null;
  }

  async function answer(request: IncomingMessage): Promise<{ status: number; body?: object }> {
    if (!authorized(request)) throw new ApiError(401, { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' });
    const path = (request.url ?? '').split('?')[0] ?? '';
    const client = /^\/api\/v5\/clients\/([^/]+)$/.exec(path);
    if (client) {
      const clientid = decodeURIComponent(client[1] as string);
      const notFound = new ApiError(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
      if (request.method === 'GET') {
        const info = clientInfo(clientid);
        if (!info) throw notFound;
        return { status: 200, body: info };
      }
      if (request.method === 'DELETE') {
        const session = live.get(clientid);
        if (session) options.kick(session);
        else if (offline.has(clientid)) options.discard(clientid);
        else throw notFound;
        return { status: 204 };
      }
    }
    if (path === '/api/v5/publish' && request.method === 'POST') {
      let body: unknown;
      try {
        body = JSON.parse(await readBody(request));
      } catch {
        throw new ApiError(400, { code: 'BAD_REQUEST', message: 'the body is not JSON' });
      }
      const message = readMessage(body);
      if (!options.publish(message)) return { status: 202, body: { reason_code: 16, message: 'no_matching_subscribers' } };
      return { status: 200, body: { id: message.id } };
    }
    throw new ApiError(404, { code: 'NOT_FOUND', message: 'Request Path Not Found' });
  }

  const server: Server = createServer((request, response: ServerResponse) => {
    answer(request).then(
      ({ status, body }) => send(response, status, body),
      (error: unknown) => {
        if (error instanceof ApiError) return send(response, error.status, error.body);
        options.log.warn(`REST API: ${error instanceof Error ? error.message : String(error)}`);
        send(response, 500, { code: 'INTERNAL_ERROR', message: 'internal error' });
      },
    );
  });
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(response: ServerResponse, status: number, body?: object): void {
  response.writeHead(status, body ? { 'content-type': 'application/json' } : {});
  response.end(body ? JSON.stringify(body) : undefined);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    // Base64 of the largest payload, and room for the rest of the body.
    if (size > MAX_PAYLOAD_BYTES * 2) throw new ApiError(400, { reason_code: 151, message: 'packet_too_large' });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

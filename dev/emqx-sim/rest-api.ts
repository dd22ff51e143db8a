import { timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { PUBLISH_DEFAULTS, PUBLISH_PROPERTIES, REST_ANSWERS, type RestAnswer } from './emqx-facts.js';
import type { SimLog } from './log.js';
import type { Session, SessionRegistry } from './sessions.js';

/** A `POST /api/v5/publish` body EMQX accepted. */
export interface ApiMessage {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  /** The message's properties under their MQTT names. */
  readonly properties: Record<string, unknown>;
}

/** What the REST API asks of the rest of the simulation. */
export interface RestCore {
  readonly node: string;
  readonly sessions: SessionRegistry;
  /** Ends the client's session (reason `kicked`); false when the client id is unknown. */
  kick(clientid: string): boolean;
  /** Routes the message: its id, whether anyone receives it, and what the answer waits for under the delivery plan. */
  publish(message: ApiMessage): { id: string; received: boolean; answerAfter: Promise<unknown> | null };
}

/** One request the REST API received. */
export interface RecordedCall {
  readonly method: string;
  readonly path: string;
  /** The client id of a `/clients/{id}` path, URL-decoded. */
  readonly clientId: string | null;
  readonly authorized: boolean;
}

/** A `POST /api/v5/publish` and how it was answered. */
export interface PublishedMessage {
  readonly body: Record<string, unknown>;
  readonly topic: string;
  readonly status: number;
  /** EMQX's message id (200 only). */
  readonly id: string | null;
  /** One message of a `POST /api/v5/publish/bulk` (its own status is the item's). */
  readonly bulk?: boolean;
}

/** A publish that does not get its normal answer: a status, no answer at all, or a dropped connection. */
export type PublishFailure = number | 'hang' | 'reset';

export interface RestApi {
  readonly url: string;
  readonly calls: RecordedCall[];
  readonly published: PublishedMessage[];
  /** Every request is answered this status until it is cleared (null). */
  failWith(status: number | null): void;
  /** The next publishes fail like this, one each, instead of publishing; replaces what was left. */
  failNextPublishes(failures: readonly PublishFailure[]): void;
  close(): Promise<void>;
}

class ApiError extends Error {
  constructor(readonly answer: RestAnswer) {
    super(JSON.stringify(answer.body ?? {}));
  }
}

/** The body a failure injected on purpose answers with: EMQX's own where it has one for the status. */
function injected(status: number, publish: boolean): RestAnswer {
  if (publish && status === REST_ANSWERS.dispatchFailed.status) return REST_ANSWERS.dispatchFailed;
  if (publish && status === REST_ANSWERS.packetTooLarge.status) return REST_ANSWERS.packetTooLarge;
  return { status, body: { code: 'INTERNAL_ERROR', message: 'failing on purpose' } };
}

function validTopicName(topic: unknown): topic is string {
  return typeof topic === 'string' && topic !== '' && !/[+#\0]/.test(topic) && Buffer.byteLength(topic) <= 65535;
}

function readMessage(body: unknown): ApiMessage {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(REST_ANSWERS.badRequest('the body is not a JSON object'));
  const fields = body as Record<string, unknown>;
  if (typeof fields.payload !== 'string') throw new ApiError(REST_ANSWERS.badRequest('payload: a string is required'));
  const encoding = fields.payload_encoding ?? PUBLISH_DEFAULTS.payloadEncoding;
  if (encoding !== 'plain' && encoding !== 'base64') throw new ApiError(REST_ANSWERS.badRequest('payload_encoding: plain or base64'));
  if (encoding === 'base64' && !/^[A-Za-z0-9+/]*={0,2}$/.test(fields.payload)) throw new ApiError(REST_ANSWERS.badBase64);
  const qos = fields.qos ?? PUBLISH_DEFAULTS.qos;
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new ApiError(REST_ANSWERS.badRequest('qos: 0, 1 or 2'));
  const retain = fields.retain ?? PUBLISH_DEFAULTS.retain;
  if (typeof retain !== 'boolean') throw new ApiError(REST_ANSWERS.badRequest('retain: a boolean'));
  const given = fields.properties ?? {};
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw new ApiError(REST_ANSWERS.badRequest('properties: an object'));
  const properties: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(given)) {
    const mqttName = PUBLISH_PROPERTIES[name];
    if (mqttName === undefined) throw new ApiError(REST_ANSWERS.badRequest(`properties.${name} is unknown`));
    properties[mqttName] = value;
  }
  const expiry = properties['Message-Expiry-Interval'];
  if (expiry !== undefined && (typeof expiry !== 'number' || !Number.isInteger(expiry) || expiry < 0)) {
    throw new ApiError(REST_ANSWERS.badRequest('properties.message_expiry_interval: seconds'));
  }
  // EMQX validates the topic after decoding the payload.
  if (!validTopicName(fields.topic)) throw new ApiError(REST_ANSWERS.topicInvalid);
  const payload = Buffer.from(fields.payload, encoding === 'base64' ? 'base64' : 'utf8');
  if (payload.length + Buffer.byteLength(fields.topic) > PUBLISH_DEFAULTS.maxPacketBytes) throw new ApiError(REST_ANSWERS.packetTooLarge);
  return { topic: fields.topic, payload, qos, retain, properties };
}

function clientInfo(session: Session, node: string): Record<string, unknown> {
  const port = Number(session.peername.slice(session.peername.lastIndexOf(':') + 1));
  return {
    clientid: session.clientid,
    username: session.username,
    connected: session.connected,
    connected_at: new Date(session.connectedAt).toISOString(),
    ...(session.connected ? {} : { disconnected_at: new Date(session.disconnectedAt).toISOString() }),
    ip_address: session.peerhost,
    port,
    proto_name: 'MQTT',
    proto_ver: session.protoVer,
    keepalive: session.keepalive,
    clean_start: session.cleanStart,
    subscriptions_cnt: session.subscriptions.size,
    node,
  };
}

/**
 * The part of EMQX's REST API (`/api/v5`, HTTP Basic with a bootstrapped API
 * key) the service calls: look a client up, kick it, publish to a topic;
 * answered with REST_ANSWERS of the facts.
 */
export async function startRestApi(options: {
  readonly host: string;
  readonly port: number;
  /** The `key:secret` pairs of the API key bootstrap file. */
  readonly keys: ReadonlyArray<{ key: string; secret: string }>;
  readonly core: RestCore;
  /** Records each call in `calls` and each publish in `published`. */
  readonly journal: boolean;
  readonly log: SimLog;
}): Promise<RestApi> {
  const { core } = options;
  const accepted = options.keys.map(({ key, secret }) => Buffer.from(`Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`));
  const calls: RecordedCall[] = [];
  const published: PublishedMessage[] = [];
  /** Adds to the journal, when it is kept. */
  const record = <T>(journal: T[], entry: T) => {
    if (options.journal) journal.push(entry);
  };
  const publishFailures: PublishFailure[] = [];
  let failure: number | null = null;

  const authorized = (request: IncomingMessage) => {
    const given = Buffer.from(request.headers.authorization ?? '');
    return accepted.some((expected) => given.length === expected.length && timingSafeEqual(given, expected));
  };

  async function answer(request: IncomingMessage, response: ServerResponse): Promise<RestAnswer | null> {
    const path = (request.url ?? '').split('?')[0] ?? '';
    const client = /^\/api\/v5\/clients\/([^/]+)$/.exec(path);
    const clientId = client ? decodeURIComponent(client[1] as string) : null;
    const allowed = authorized(request);
    record(calls, { method: request.method ?? '', path, clientId, authorized: allowed });
    let text: string;
    try {
      text = await readBody(request);
    } catch (error) {
      if (error instanceof ApiError) return error.answer;
      throw error;
    }
    if (!allowed) return REST_ANSWERS.badApiKey;
    const publishing = path === '/api/v5/publish' && request.method === 'POST';
    const bulk = path === '/api/v5/publish/bulk' && request.method === 'POST';
    if (failure !== null) return injected(failure, publishing || bulk);

    if (clientId !== null && request.method === 'GET') {
      const session = core.sessions.find(clientId);
      return session ? { status: 200, body: clientInfo(session, core.node) } : REST_ANSWERS.clientNotFound;
    }
    if (clientId !== null && request.method === 'DELETE') return core.kick(clientId) ? REST_ANSWERS.kicked : REST_ANSWERS.clientNotFound;
    if (bulk) return publishBulk(text, request, response);
    if (!publishing) return REST_ANSWERS.pathNotFound;

    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return REST_ANSWERS.badRequest('the body is not JSON');
    }
    const fields = (body !== null && typeof body === 'object' ? body : {}) as Record<string, unknown>;
    const topic = String(fields.topic ?? '');
    const forced = publishFailures.shift();
    if (forced === 'hang') return null;
    if (forced === 'reset') {
      request.socket.destroy();
      return null;
    }
    if (forced !== undefined) {
      record(published, { body: fields, topic, status: forced, id: null });
      return injected(forced, true);
    }
    let message: ApiMessage;
    try {
      message = readMessage(body);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      record(published, { body: fields, topic, status: error.answer.status, id: null });
      return error.answer;
    }
    const routed = core.publish(message);
    const result = routed.received ? REST_ANSWERS.published(routed.id) : REST_ANSWERS.noSubscribers;
    record(published, { body: fields, topic, status: result.status, id: routed.received ? routed.id : null });
    if (routed.answerAfter) await routed.answerAfter;
    if (response.destroyed) return null;
    return result;
  }

  /**
   * `POST /api/v5/publish/bulk` (emqx_mgmt_api_publish.erl, publish_batch/2):
   * every message is validated first, and the first invalid one answers the
   * call 400 with nothing published; then each is published as by
   * `/publish`, and the answer is one result per message, in order — 200
   * when all reached someone, 503 when one failed to dispatch, else 202.
   * The failures injected for the next publishes count one per message: a
   * 503 fails its message alone, `hang`, `reset` or another status the call.
   */
  async function publishBulk(text: string, request: IncomingMessage, response: ServerResponse): Promise<RestAnswer | null> {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return REST_ANSWERS.badRequest('the body is not JSON');
    }
    if (!Array.isArray(body)) return REST_ANSWERS.badRequest('the body is not a JSON array');
    // messages([]) answers a malformed tuple in EMQX 5.8, which ends as a 500.
    if (body.length === 0) return { status: 500, body: { code: 'INTERNAL_ERROR', message: 'empty_batch' } };
    const forced = publishFailures.splice(0, body.length);
    if (forced.includes('hang')) return null;
    if (forced.includes('reset')) {
      request.socket.destroy();
      return null;
    }
    const whole = forced.find((failure) => failure !== REST_ANSWERS.dispatchFailed.status);
    if (typeof whole === 'number') return injected(whole, true);
    const messages: ApiMessage[] = [];
    for (const item of body) {
      try {
        messages.push(readMessage(item));
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        return error.answer;
      }
    }
    const waits: Promise<unknown>[] = [];
    const items = messages.map((message, index) => {
      const fields = body[index] as Record<string, unknown>;
      if (forced[index] === REST_ANSWERS.dispatchFailed.status) {
        record(published, { body: fields, topic: message.topic, status: REST_ANSWERS.dispatchFailed.status, id: null, bulk: true });
        return REST_ANSWERS.dispatchFailed;
      }
      const routed = core.publish(message);
      if (routed.answerAfter) waits.push(routed.answerAfter);
      const result = routed.received ? REST_ANSWERS.published(routed.id) : REST_ANSWERS.noSubscribers;
      record(published, { body: fields, topic: message.topic, status: result.status, id: routed.received ? routed.id : null, bulk: true });
      return result;
    });
    await Promise.all(waits);
    if (response.destroyed) return null;
    const statuses = new Set(items.map((item) => item.status));
    const status = statuses.has(REST_ANSWERS.dispatchFailed.status) ? 503 : statuses.size === 1 && statuses.has(200) ? 200 : 202;
    return { status, body: items.map((item) => (item.body ?? {}) as Readonly<Record<string, unknown>>) };
  }

  const server: Server = createServer((request, response) => {
    answer(request, response).then(
      (result) => {
        if (result) send(response, result);
      },
      (error: unknown) => {
        options.log.warn(`REST API: ${error instanceof Error ? error.message : String(error)}`);
        send(response, { status: 500, body: { code: 'INTERNAL_ERROR', message: 'internal error' } });
      },
    );
  });
  // Kept open between calls, as EMQX's HTTP listener does (cowboy closes a
  // connection after 60 s idle). A shorter hint makes the service's HTTP
  // client open a connection per call: it keeps a connection only when the
  // server's hint exceeds its own 2 s margin. close() closes them all.
  server.keepAliveTimeout = 60_000;
  server.listen(options.port, options.host);
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    calls,
    published,
    failWith(status) {
      failure = status;
    },
    failNextPublishes(failures) {
      publishFailures.splice(0, publishFailures.length, ...failures);
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(response: ServerResponse, answer: RestAnswer): void {
  response.writeHead(answer.status, answer.body ? { 'content-type': 'application/json' } : {});
  response.end(answer.body ? JSON.stringify(answer.body) : undefined);
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    // Base64 of the largest payload, and room for the rest of the body.
    if (size > PUBLISH_DEFAULTS.maxPacketBytes * 2) throw new ApiError(REST_ANSWERS.packetTooLarge);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

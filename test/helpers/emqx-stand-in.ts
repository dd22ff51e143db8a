import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RecordedCall {
  readonly method: string;
  readonly path: string;
  /** The client id, URL-decoded. */
  readonly clientId: string | null;
  readonly authorized: boolean;
}

/** A `POST /api/v5/publish` the stand-in answered. */
export interface PublishedMessage {
  readonly body: Record<string, unknown>;
  readonly topic: string;
  readonly status: number;
  /** EMQX's message id (200 only). */
  readonly id: string | null;
}

/** A rule-engine event the stand-in sent to the service, and the status that ended EMQX's retries. */
export interface SentEvent {
  readonly event: Record<string, unknown>;
  readonly status: number;
}

/** Sends one event the way the HTTP action does; resolves with the answer's status. */
export type EventSender = (event: Record<string, unknown>) => Promise<number>;

/**
 * How delivery events reach the service (docs/emqx-contract.md §F: the HTTP action
 * retries, reorders and repeats them, and one can arrive before the publish
 * call that caused it has returned).
 */
export interface DeliveryPlan {
  /** Send a publish's events before answering it (`sometimes`: for half of them, at random). */
  beforeAnswer?: boolean | 'sometimes';
  /** Send every event twice (a replayed delivery carries flags.dup = true). */
  repeat?: boolean;
  /** Send each publish's events in random order (an ack before its delivery). */
  shuffle?: boolean;
}

export interface SessionOptions {
  /** A persistent session keeps the subscription and queues messages while the client is offline. */
  persistent?: boolean;
  /** Subscription QoS; a QoS 0 subscriber never acks (QoS is the minimum of both). */
  qos?: 0 | 1;
  /** The client acks each QoS 1 message it gets (default true). */
  acks?: boolean;
}

export interface EmqxStandIn {
  readonly url: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly calls: RecordedCall[];
  /** Every publish call, in the order they were answered. */
  readonly published: PublishedMessage[];
  /** Every event sent to the service, once its retries ended. */
  readonly events: SentEvent[];
  /** Marks a client as known to EMQX (connected or an offline persistent session). */
  setClient(clientId: string, connected: boolean): void;
  removeClient(clientId: string): void;
  /** Makes every request fail with this status (null = normal answers). */
  failWith(status: number | null): void;
  /**
   * The next publish calls answer these statuses (503, 500, 400) instead of
   * publishing; `hang` never answers, `reset` drops the connection unanswered.
   * Replaces what was left; none clears.
   */
  failNextPublishes(...statuses: (number | 'hang' | 'reset')[]): void;
  /** Where rule-engine events go (the service's /emqx/events); without it none are sent. */
  sendEventsTo(sender: EventSender | null): void;
  deliveryPlan(plan: DeliveryPlan): void;
  /**
   * The client connects (if not yet) and subscribes to `topic`: a
   * `session.subscribed` event, and what its persistent session held is delivered.
   */
  subscribe(clientId: string, topic: string, options?: SessionOptions): Promise<void>;
  /** The client disconnects; a persistent session keeps its subscription (and queues what comes), a clean one ends. */
  disconnect(clientId: string): void;
  /** The next message for this client is dropped by its session with this reason (`expired`, `queue_full`). */
  dropNext(clientId: string, reason: string): void;
  /** Resolves once every event under way has been answered. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

interface Session {
  connected: boolean;
  persistent: boolean;
  qos: 0 | 1;
  acks: boolean;
  topics: Set<string>;
  /** Messages held while offline (persistent sessions). */
  queue: Message[];
  dropNext: string | null;
}

interface Message {
  id: string;
  topic: string;
  payload: string;
  qos: number;
  properties: Record<string, unknown>;
  receivedAt: number;
}

/** `POST /api/v5/publish` properties as the message carries them, and as rule events show them in pub_props. */
function pubProps(properties: Record<string, unknown>): Record<string, unknown> {
  const props: Record<string, unknown> = { 'User-Property': {} };
  const user = properties.user_properties;
  if (user && typeof user === 'object') {
    props['User-Property'] = user;
    props['User-Property-Pairs'] = Object.entries(user).map(([key, value]) => ({ key, value }));
  }
  if (properties.message_expiry_interval !== undefined) props['Message-Expiry-Interval'] = properties.message_expiry_interval;
  return props;
}

function shuffled<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * A local HTTP server answering like EMQX's REST API (docs/emqx-contract.md §D, §F):
 * Basic auth checked; `GET /api/v5/clients/{id}` → 200 {connected, ...} or
 * 404; `DELETE /api/v5/clients/{id}` → 204 (and the client is gone) or 404;
 * `POST /api/v5/publish` → 200 {id} when a session is subscribed to the topic
 * (connected, or offline with a persistent session, which holds the message),
 * 202 with no id when none is, 503 when told to fail. A delivery to a
 * connected client sends `message.delivered` and (QoS 1, acking client)
 * `message.acked` to the service, shaped as emqx_rule_events makes them; a
 * 202 sends `message.dropped` (no_subscribers).
 */
export async function startEmqxStandIn(apiKey = 'stand-in-key', apiSecret = 'stand-in-secret'): Promise<EmqxStandIn> {
  const clients = new Map<string, boolean>();
  const sessions = new Map<string, Session>();
  const calls: RecordedCall[] = [];
  const published: PublishedMessage[] = [];
  const events: SentEvent[] = [];
  const pending = new Set<Promise<void>>();
  const publishFailures: (number | 'hang' | 'reset')[] = [];
  let failure: number | null = null;
  let sender: EventSender | null = null;
  let plan: DeliveryPlan = {};
  const expected = `Basic ${Buffer.from(`${apiKey}:${apiSecret}`).toString('base64')}`;

  /** The HTTP action: 2xx is done; 503 and 429 are retried; anything else drops the event. */
  async function sendOne(event: Record<string, unknown>) {
    if (!sender) return;
    let status = 0;
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        status = await sender(event);
      } catch {
        status = 0;
      }
      if (status !== 503 && status !== 429 && status !== 0) break;
      await sleep(50);
    }
    events.push({ event, status });
  }

  function emit(batch: Record<string, unknown>[]): Promise<void> {
    let list = plan.repeat ? batch.flatMap((event) => [event, event.event === 'message.delivered' ? { ...event, flags: { dup: true, retain: false } } : event]) : batch;
    if (plan.shuffle) list = shuffled(list);
    const work = Promise.all(list.map((event) => sendOne(event))).then(() => undefined);
    pending.add(work);
    void work.finally(() => pending.delete(work));
    return work;
  }

  const baseEvent = (name: string, clientId: string, message: Message) => ({
    event: name,
    id: message.id,
    from_clientid: 'http_api',
    from_username: 'undefined',
    clientid: clientId,
    username: clientId,
    payload: message.payload,
    peerhost: '10.0.0.7',
    peername: '10.0.0.7:50312',
    topic: message.topic,
    qos: message.qos,
    flags: { dup: false, retain: false },
    pub_props: pubProps(message.properties),
    publish_received_at: message.receivedAt,
    timestamp: Date.now(),
    node: 'emqx@127.0.0.1',
    metadata: { rule_id: `device_link_${name.replace('.', '_')}` },
  });

  /** What the session sends the connected client, and the events that follow. */
  function deliver(clientId: string, session: Session, message: Message): Record<string, unknown>[] {
    if (session.dropNext !== null) {
      const reason = session.dropNext;
      session.dropNext = null;
      return [{ ...baseEvent('delivery.dropped', clientId, message), reason }];
    }
    const qos = Math.min(session.qos, message.qos);
    const delivered = { ...baseEvent('message.delivered', clientId, message), qos };
    if (qos === 0 || !session.acks) return [delivered];
    return [delivered, { ...baseEvent('message.acked', clientId, message), qos, puback_props: {} }];
  }

  async function publish(body: Record<string, unknown>): Promise<{ status: number; answer: object; events: Record<string, unknown>[] }> {
    const topic = String(body.topic ?? '');
    const message: Message = {
      id: randomBytes(16).toString('hex').toUpperCase(),
      topic,
      payload: String(body.payload ?? ''),
      // EMQX's default is QoS 0: a publish that leaves it out is fire-and-forget.
      qos: typeof body.qos === 'number' ? body.qos : 0,
      properties: (body.properties as Record<string, unknown> | undefined) ?? {},
      receivedAt: Date.now(),
    };
    const subscribers = [...sessions.entries()].filter(([, session]) => session.topics.has(topic) && (session.connected || session.persistent));
    if (subscribers.length === 0) {
      return {
        status: 202,
        answer: { reason_code: 16, message: 'no_matching_subscribers' },
        events: [{ ...baseEvent('message.dropped', 'http_api', message), clientid: 'http_api', username: 'undefined', reason: 'no_subscribers' }],
      };
    }
    const toSend: Record<string, unknown>[] = [];
    for (const [clientId, session] of subscribers) {
      if (session.connected) toSend.push(...deliver(clientId, session, message));
      else session.queue.push(message);
    }
    return { status: 200, answer: { id: message.id }, events: toSend };
  }

  const server: Server = createServer((request, response) => {
    void (async () => {
      const path = (request.url ?? '').split('?')[0] ?? '';
      const match = /^\/api\/v5\/clients\/([^/]+)$/.exec(path);
      const clientId = match?.[1] ? decodeURIComponent(match[1]) : null;
      const authorized = request.headers.authorization === expected;
      calls.push({ method: request.method ?? '', path, clientId, authorized });
      const send = (status: number, body?: object) => {
        response.writeHead(status, body ? { 'content-type': 'application/json' } : {});
        response.end(body ? JSON.stringify(body) : undefined);
      };
      const text = await readBody(request);
      if (!authorized) return send(401, { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' });
      if (failure !== null) return send(failure, { code: 'INTERNAL_ERROR', message: 'failing on purpose' });
      if (path === '/api/v5/publish' && request.method === 'POST') {
        const body = JSON.parse(text) as Record<string, unknown>;
        const topic = String(body.topic ?? '');
        const forced = publishFailures.shift();
        if (forced === 'hang') return;
        if (forced === 'reset') return request.socket.destroy();
        if (forced !== undefined) {
          published.push({ body, topic, status: forced, id: null });
          return send(forced, forced === 503 ? { reason_code: 131, message: 'failed_to_dispatch' } : { code: 'BAD_REQUEST', message: 'failing on purpose' });
        }
        const result = await publish(body);
        published.push({ body, topic, status: result.status, id: result.status === 200 ? (result.answer as { id: string }).id : null });
        const sending = emit(result.events);
        if (plan.beforeAnswer === true || (plan.beforeAnswer === 'sometimes' && Math.random() < 0.5)) await sending;
        return send(result.status, result.answer);
      }
      if (clientId === null) return send(404, { code: 'NOT_FOUND', message: 'no such route' });
      const connected = clients.get(clientId);
      if (request.method === 'GET') {
        if (connected === undefined) return send(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
        return send(200, { clientid: clientId, connected, connected_at: '2026-01-01T00:00:00.000+00:00', ip_address: '10.0.0.1' });
      }
      if (request.method === 'DELETE') {
        if (connected === undefined) return send(404, { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' });
        clients.delete(clientId);
        sessions.delete(clientId);
        return send(204);
      }
      return send(405, { code: 'METHOD_NOT_ALLOWED', message: 'method not allowed' });
    })();
  });
  // Connections the service keeps alive must not hold close() up.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    apiSecret,
    calls,
    published,
    events,
    setClient: (clientId, connected) => void clients.set(clientId, connected),
    removeClient: (clientId) => void clients.delete(clientId),
    failWith(status) {
      failure = status;
    },
    failNextPublishes(...statuses) {
      publishFailures.splice(0, publishFailures.length, ...statuses);
    },
    sendEventsTo(next) {
      sender = next;
    },
    deliveryPlan(next) {
      plan = next;
    },
    async subscribe(clientId, topic, options = {}) {
      let session = sessions.get(clientId);
      if (!session) {
        session = { connected: true, persistent: false, qos: 1, acks: true, topics: new Set(), queue: [], dropNext: null };
        sessions.set(clientId, session);
      }
      session.connected = true;
      session.persistent = options.persistent ?? session.persistent;
      session.qos = options.qos ?? session.qos;
      session.acks = options.acks ?? session.acks;
      session.topics.add(topic);
      clients.set(clientId, true);
      const held = session.queue.splice(0);
      const subscribed = {
        event: 'session.subscribed',
        clientid: clientId,
        username: clientId,
        peerhost: '10.0.0.7',
        peername: '10.0.0.7:50312',
        topic,
        qos: session.qos,
        sub_props: { 'User-Property': {} },
        timestamp: Date.now(),
        node: 'emqx@127.0.0.1',
        metadata: { rule_id: 'device_link_command_subscribed' },
      };
      await emit([subscribed, ...held.flatMap((message) => deliver(clientId, session, message))]);
    },
    disconnect(clientId) {
      const session = sessions.get(clientId);
      if (!session) return;
      session.connected = false;
      if (!session.persistent) sessions.delete(clientId);
      clients.set(clientId, false);
    },
    dropNext(clientId, reason) {
      const session = sessions.get(clientId);
      if (session) session.dropNext = reason;
    },
    async settle() {
      while (pending.size > 0) await Promise.all(pending);
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

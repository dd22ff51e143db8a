import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AuthenticateError, type Client, type ConnectPacket, type PublishPacket, type Subscription } from 'aedes';
import { durationMs } from './emqx-config.js';
import { AUTHN_PLACEHOLDERS, AUTHZ_PLACEHOLDERS, renderAuthRequest, topicMatches, type Values } from './templates.js';
import { hoconArray, hoconAt, hoconObject, hoconString, type HoconObject } from './hocon.js';
import { checkAcl } from './acl.js';
import { readAuthnAnswer, readAuthzAnswer, type AuthnDecision } from './auth-answers.js';
import { createEventSender, type EventSender } from './http-action.js';
import type { BrokerLog } from './log.js';
import { startRestApi, type RestApi } from './rest-api.js';
import { messageId, type OfflineSession, type Session } from './sessions.js';
import { createRuleEngine, type RuleEngine } from './rule-engine.js';
import { sendToService } from './service.js';

/** Events this broker raises for the rule engine; a rule selecting any other is skipped. */
export const RAISED_EVENTS: ReadonlySet<string> = new Set([
  'message.publish',
  'client.connected',
  'client.disconnected',
  'session.subscribed',
  'message.delivered',
  'message.acked',
  'message.dropped',
  'delivery.dropped',
]);

/** EMQX's `mqtt.session_expiry_interval` default: how long a clean_session=false session outlives its connection. */
const SESSION_EXPIRY_S = 7200;

/** Longest a timer can wait in Node; a later `expire_at` is re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface DevBrokerOptions {
  /** deploy/emqx/emqx.conf as the container entrypoint renders it (parsed). */
  readonly config: HoconObject;
  /** Where the service answers: the host of the configuration's URLs (`device-link:8080`) is taken to mean this. */
  readonly serviceUrl: string;
  readonly mqtt: { readonly host: string; readonly port: number };
  readonly api: { readonly host: string; readonly port: number; readonly key: string; readonly secret: string };
  readonly log: BrokerLog;
  /** Pause between buffer retries of an undelivered event; by default `resource_opts.health_check_interval`. */
  readonly eventResumeIntervalMs?: number;
}

export interface DevBroker {
  readonly mqttPort: number;
  readonly apiUrl: string;
  readonly rules: RuleEngine;
  /** Disconnects every client (their disconnect events are sent), stops listening, and gives events under way `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

/** Where a routed message came from: a client's session, or the REST API (no session). */
interface MessageOrigin {
  readonly id: string;
  readonly from: Session | undefined;
  readonly pubProps: Record<string, unknown>;
  readonly receivedAt: number;
}

function withoutMappedPrefix(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/, '');
}

function endpoint(address: string | undefined, port: number | undefined): string {
  const host = withoutMappedPrefix(address);
  return host.includes(':') ? `[${host}]:${port ?? 0}` : `${host}:${port ?? 0}`;
}

/**
 * A development MQTT broker (aedes) that treats the service as EMQX 5.8 with
 * deploy/emqx/emqx.conf does (docs/emqx-contract.md): every CONNECT goes to the
 * configured HTTP authenticators with their body template — before any
 * takeover, so a denied newcomer leaves the live session alone; publish and
 * subscribe are decided by the ACL of the authentication answer first, then by
 * the HTTP authorization sources, then `no_match`; `expire_at` ends the
 * session; the rules of `rule_engine` run over MQTT events and their HTTP
 * actions post to the service with EMQX's retries; and the REST API subset the
 * service calls (client look-up, kick, publish) answers on its own port.
 *
 * Differences that do not change what the service sees: MQTT 3.1 and 3.1.1
 * only (aedes has no MQTT 5), no TLS listener, no authorization cache (every
 * check that reaches the HTTP source is asked anew), sessions in memory.
 */
export async function startDevBroker(options: DevBrokerOptions): Promise<DevBroker> {
  const { config, log, serviceUrl } = options;
  const node = hoconString(config, 'node.name');
  const authenticators = hoconArray(config, 'authentication').filter((entry, index) => {
    const usable = typeof entry === 'object' && entry !== null && !Array.isArray(entry) && entry.backend === 'http' && entry.enable !== false;
    if (!usable) log.warn(`authentication.${index} is not an enabled HTTP authenticator; skipped`);
    return usable;
  }) as HoconObject[];
  const authorization = hoconObject(config, 'authorization');
  const authzSources = hoconArray(authorization, 'sources').filter((entry, index) => {
    const usable = typeof entry === 'object' && entry !== null && !Array.isArray(entry) && entry.type === 'http' && entry.enable !== false;
    if (!usable) log.warn(`authorization.sources.${index} is not an enabled HTTP source; skipped`);
    return usable;
  }) as HoconObject[];
  // EMQX's defaults when the file does not say.
  const noMatch = authorization.no_match === 'deny' ? 'deny' : 'allow';
  const disconnectOnDeny = authorization.deny_action === 'disconnect';
  const timeoutOf = (source: HoconObject) => (source.request_timeout === undefined ? 5000 : durationMs(source.request_timeout));

  // One sender per HTTP action, each with that action's retry settings.
  const senders = new Map<string, EventSender>();
  for (const [name, action] of Object.entries((hoconAt(config, 'actions.http') ?? {}) as HoconObject)) {
    senders.set(
      `http:${name}`,
      createEventSender({
        ...eventActionSettings(action as HoconObject),
        ...(options.eventResumeIntervalMs !== undefined ? { resumeIntervalMs: options.eventResumeIntervalMs } : {}),
        send: (request, timeoutMs, signal) => sendToService(serviceUrl, request, timeoutMs, signal),
        log,
      }),
    );
  }
  const rules = createRuleEngine({
    config,
    emitted: RAISED_EVENTS,
    dispatch: (action, request, label) => void senders.get(action)?.send(request, label),
    log,
  });
  const raise = (event: string, fields: Values) => {
    try {
      rules.fire({ event, timestamp: Date.now(), node, ...fields });
    } catch (error) {
      // A rule that cannot render its output must not take the broker down; EMQX counts it as a failed rule.
      log.warn(`rules on ${event} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  };

  /** Sessions by connection, from the authenticator's allow on. */
  const sessions = new WeakMap<Client, Session>();
  /** The connected session of each client id. */
  const live = new Map<string, Session>();
  const offline = new Map<string, OfflineSession>();
  const connectPackets = new WeakMap<Client, ConnectPacket>();
  const keepaliveTimeouts = new WeakSet<Client>();
  /** Messages published through the REST API, by packet: what their answer and their events carry. */
  const restPublishes = new WeakMap<object, { id: string; pubProps: Record<string, unknown> }>();
  /**
   * Each routed message's id and origin, keyed by its `properties` object:
   * aedes carries that object by reference into every copy it queues and
   * delivers (MQTT 3.1.1 never puts it on the wire), so a delivery finds the
   * id its publish event carried.
   */
  const messages = new WeakMap<object, MessageOrigin>();
  /** Publishes that authorization denied with deny_action = ignore: acknowledged, never routed. */
  const deniedPublishes = new WeakSet<object>();

  // Session expiry of offline persistent sessions.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [clientid, session] of offline) if (now - session.disconnectedAt > SESSION_EXPIRY_S * 1000) offline.delete(clientid);
  }, 60_000);
  sweep.unref();

  class EmqxLikeAedes extends Aedes {
    // aedes routes a client's PUBLISH through publish(packet, client, done)
    // after acknowledging it, and the REST API's through publish(packet, done).
    // A denied one stops here, as EMQX with deny_action = ignore acknowledges
    // and drops it; the others get their id and origin for the rule events.
    override publish(packet: PublishPacket, ...rest: unknown[]): void {
      const done = rest[rest.length - 1];
      if (deniedPublishes.has(packet) && typeof done === 'function') {
        (done as () => void)();
        return;
      }
      const client = rest.length > 1 ? (rest[0] as Client | null) : null;
      const session = client ? sessions.get(client) : undefined;
      const fromApi = restPublishes.get(packet);
      // Publishes of the broker itself (heartbeats, $SYS) have neither a client nor a REST origin.
      if (session || fromApi) {
        packet.properties ??= {};
        const origin = { id: fromApi?.id ?? messageId(), from: session, pubProps: fromApi?.pubProps ?? {}, receivedAt: Date.now() };
        messages.set(packet.properties, origin);
        if (!hasSubscriber(packet.topic)) {
          raise('message.dropped', {
            id: origin.id,
            reason: 'no_subscribers',
            clientid: session?.clientid ?? 'http_api',
            username: session?.username,
            payload: packet.payload,
            peerhost: session?.peerhost,
            topic: packet.topic,
            qos: packet.qos,
            flags: { dup: packet.dup, retain: packet.retain },
            pub_props: origin.pubProps,
            publish_received_at: origin.receivedAt,
          });
        }
      }
      (Aedes.prototype.publish as (packet: PublishPacket, ...rest: unknown[]) => void).call(this, packet, ...rest);
    }
  }

  const broker = new EmqxLikeAedes({
    // Client ids are device UUIDs (36 characters): MQTT 3.1's 23-character limit does not apply in EMQX.
    maxClientsIdLength: 65535,
    preConnect(client, packet, callback) {
      connectPackets.set(client, packet);
      callback(null, true);
    },
    authenticate(client, username, password, callback) {
      void authenticate(client, username ?? '', password?.toString('utf8') ?? '').then(
        (session) => {
          if (session) {
            callback(null, true);
          } else {
            const refused = Object.assign(new Error('not authorized'), { returnCode: 5 }) as AuthenticateError;
            callback(refused, false);
          }
        },
        (error: unknown) => {
          log.warn(`authentication of ${client.id} failed: ${error instanceof Error ? error.message : String(error)}`);
          callback(Object.assign(new Error('server unavailable'), { returnCode: 3 }) as AuthenticateError, false);
        },
      );
    },
    authorizePublish(client, packet, callback) {
      if (!client) return callback(null);
      if (packet.topic.startsWith('$SYS/')) return callback(new Error('$SYS topics are reserved'));
      const session = sessions.get(client);
      if (!session) return callback(new Error('not authenticated'));
      void authorize(session, 'publish', packet.topic, packet.qos, packet.retain).then((decision) => {
        if (decision === 'allow') return callback(null);
        log.info(`${session.clientid}: publish to ${packet.topic} denied`);
        if (disconnectOnDeny) return callback(new Error('not authorized'));
        deniedPublishes.add(packet);
        callback(null);
      });
    },
    authorizeSubscribe(client, subscription, callback) {
      const session = sessions.get(client);
      if (!session) return callback(new Error('not authenticated'));
      // §B: a shared subscription is authorized for its filter without `$share/group/`.
      const filter = subscription.topic.replace(/^\$share\/[^/]+\//, '');
      void authorize(session, 'subscribe', filter, subscription.qos, false).then((decision) => {
        if (decision === 'allow') return callback(null, subscription);
        log.info(`${session.clientid}: subscribe to ${subscription.topic} denied`);
        if (disconnectOnDeny) return callback(new Error('not authorized'));
        callback(null, null);
      });
    },
    published(packet, _client, callback) {
      callback(null);
      const origin = packet.properties ? messages.get(packet.properties) : undefined;
      if (!origin) return;
      const from = origin.from;
      raise('message.publish', {
        id: origin.id,
        clientid: from?.clientid ?? 'http_api',
        username: from?.username,
        payload: packet.payload,
        peerhost: from?.peerhost,
        peername: from?.peername,
        topic: packet.topic,
        qos: packet.qos,
        flags: { dup: packet.dup, retain: packet.retain },
        pub_props: origin.pubProps,
        publish_received_at: origin.receivedAt,
        client_attrs: from?.clientAttrs ?? {},
      });
    },
    authorizeForward(client, packet) {
      const origin = packet.properties ? messages.get(packet.properties) : undefined;
      const session = sessions.get(client);
      const expiry = (packet as { messageExpiry?: number }).messageExpiry;
      // EMQX drops a queued message whose Message-Expiry-Interval passed before it leaves the queue.
      const expired = expiry !== undefined && Date.now() > expiry;
      if (origin && session) {
        // The QoS the receiver gets: the message's, at most its subscription's (upgrade_qos = false).
        const granted = Math.max(
          0,
          ...[...session.subscriptions].filter(([filter]) => topicMatches(filter.replace(/^\$share\/[^/]+\//, ''), packet.topic)).map(([, qos]) => qos),
        );
        const delivery = {
          id: origin.id,
          from_clientid: origin.from?.clientid ?? 'http_api',
          from_username: origin.from?.username,
          clientid: session.clientid,
          username: session.username,
          payload: packet.payload,
          peerhost: session.peerhost,
          topic: packet.topic,
          qos: Math.min(packet.qos, granted),
          flags: { dup: packet.dup, retain: packet.retain },
          pub_props: origin.pubProps,
          publish_received_at: origin.receivedAt,
          client_attrs: session.clientAttrs,
        };
        if (expired) raise('delivery.dropped', { ...delivery, reason: 'expired' });
        else {
          raise('message.delivered', delivery);
          // Acknowledged (PUBACK, or PUBREC for QoS 2) later: message.acked then.
          if (delivery.qos > 0) session.unacked.push(delivery);
        }
      }
      return expired ? null : packet;
    },
  });
  await broker.listen();

  async function authenticate(client: Client, username: string, password: string): Promise<Session | null> {
    const conn = client.conn as Socket;
    const peerhost = withoutMappedPrefix(conn.remoteAddress);
    const values = { clientid: client.id, username, password, peerhost };
    let decision: AuthnDecision = { result: 'ignore', why: 'no authenticator' };
    // The chain: `ignore` passes to the next authenticator; allow or deny ends it.
    for (const authenticator of authenticators) {
      const request = renderAuthRequest(authenticator, values, AUTHN_PLACEHOLDERS);
      try {
        decision = readAuthnAnswer(await sendToService(serviceUrl, request, timeoutOf(authenticator)), Date.now());
      } catch (error) {
        decision = { result: 'ignore', why: error instanceof Error ? error.message : String(error) };
      }
      if (decision.result !== 'ignore') break;
    }
    if (decision.result !== 'allow') {
      const why = decision.result === 'ignore' ? ` (every authenticator ignored: ${decision.why})` : '';
      log.info(`${client.id}: connect refused, not authorized${why}`);
      return null;
    }
    const packet = connectPackets.get(client);
    const session: Session = {
      client,
      clientid: client.id,
      username,
      peerhost,
      peername: endpoint(conn.remoteAddress, conn.remotePort),
      sockname: endpoint(conn.localAddress, conn.localPort),
      keepalive: packet?.keepalive ?? 0,
      cleanStart: client.clean,
      superuser: decision.superuser,
      clientAttrs: decision.clientAttrs,
      acl: decision.acl,
      connectedAt: 0,
      connected: false,
      unacked: [],
      subscriptions: new Map(!client.clean ? (offline.get(client.id)?.subscriptions ?? []) : []),
    };
    if (decision.expireAt !== undefined) armExpiry(session, decision.expireAt * 1000);
    sessions.set(client, session);
    // The newcomer wins (§E): the live session ends, discarded when the newcomer starts clean.
    const previous = live.get(client.id);
    if (previous) previous.reason = client.clean ? 'discarded' : 'takenover';
    return session;
  }

  function armExpiry(session: Session, atMs: number): void {
    const wait = atMs - Date.now();
    session.expiry = setTimeout(
      () => {
        if (Date.now() < atMs) return armExpiry(session, atMs);
        // EMQX ends a connection whose authentication expired as not authorized.
        session.reason = 'not_authorized';
        log.info(`${session.clientid}: authentication expired (expire_at), disconnecting`);
        session.client.close();
      },
      Math.min(Math.max(0, wait), MAX_TIMER_MS),
    );
  }

  async function authorize(session: Session, action: 'publish' | 'subscribe', topic: string, qos: number, retain: boolean): Promise<'allow' | 'deny'> {
    if (session.superuser) return 'allow';
    const acl = checkAcl(session.acl, { action, topic, qos, retain, clientid: session.clientid, username: session.username });
    if (acl !== 'nomatch') return acl;
    for (const source of authzSources) {
      const values = {
        clientid: session.clientid,
        username: session.username,
        peerhost: session.peerhost,
        topic,
        action,
        // §B: rendered as strings.
        qos: String(qos),
        retain: String(retain),
        proto_name: 'MQTT',
        client_attrs: session.clientAttrs,
      };
      try {
        const decision = readAuthzAnswer(await sendToService(serviceUrl, renderAuthRequest(source, values, AUTHZ_PLACEHOLDERS), timeoutOf(source)));
        if (decision) return decision;
      } catch {
        // A timeout or connection error passes to the next source.
      }
    }
    return noMatch;
  }

  broker.on('keepaliveTimeout', (client) => keepaliveTimeouts.add(client));

  broker.on('ack', (_packet, client) => {
    const delivery = client ? sessions.get(client)?.unacked.shift() : undefined;
    if (delivery) raise('message.acked', { ...delivery, puback_props: {} });
  });

  broker.on('clientReady', (client) => {
    const session = sessions.get(client);
    if (!session) return;
    session.connectedAt = Date.now();
    session.connected = true;
    live.set(session.clientid, session);
    offline.delete(session.clientid);
    log.info(`${session.clientid}: connected from ${session.peername}`);
    raise('client.connected', {
      clientid: session.clientid,
      username: session.username,
      mountpoint: undefined,
      peername: session.peername,
      sockname: session.sockname,
      proto_name: 'MQTT',
      proto_ver: client.version,
      keepalive: session.keepalive,
      clean_start: session.cleanStart,
      receive_maximum: 32,
      expiry_interval: session.cleanStart ? 0 : SESSION_EXPIRY_S,
      is_bridge: false,
      conn_props: {},
      connected_at: session.connectedAt,
      client_attrs: session.clientAttrs,
    });
  });

  broker.on('clientDisconnect', (client) => {
    const session = sessions.get(client);
    if (!session?.connected) return;
    session.connected = false;
    clearTimeout(session.expiry);
    // aedes marks a connection that ended with a DISCONNECT packet in this field.
    const sentDisconnect = (client as unknown as { _disconnected?: boolean })._disconnected === true;
    const reason = session.reason ?? (sentDisconnect ? 'normal' : keepaliveTimeouts.has(client) ? 'keepalive_timeout' : 'tcp_closed');
    const disconnectedAt = Date.now();
    if (live.get(session.clientid) === session) live.delete(session.clientid);
    if (!session.cleanStart && reason !== 'kicked' && reason !== 'discarded' && reason !== 'takenover') {
      offline.set(session.clientid, {
        clientid: session.clientid,
        username: session.username,
        connectedAt: session.connectedAt,
        disconnectedAt,
        subscriptions: session.subscriptions,
      });
    }
    log.info(`${session.clientid}: disconnected (${reason})`);
    raise('client.disconnected', {
      clientid: session.clientid,
      username: session.username,
      reason,
      peername: session.peername,
      sockname: session.sockname,
      proto_name: 'MQTT',
      proto_ver: client.version,
      disconn_props: {},
      connected_at: session.connectedAt,
      disconnected_at: disconnectedAt,
      client_attrs: session.clientAttrs,
    });
  });

  broker.on('subscribe', (subscriptions: Subscription[], client) => {
    const session = sessions.get(client);
    if (!session) return;
    for (const { topic, qos } of subscriptions) {
      // aedes reports a refused subscription with the SUBACK failure code 128 as its QoS.
      if ((qos as number) === 128) continue;
      session.subscriptions.set(topic, qos);
      raise('session.subscribed', {
        clientid: session.clientid,
        username: session.username,
        peerhost: session.peerhost,
        topic,
        qos,
        sub_props: {},
        client_attrs: session.clientAttrs,
      });
    }
  });

  broker.on('unsubscribe', (topics: string[], client) => {
    const session = sessions.get(client);
    for (const topic of topics) session?.subscriptions.delete(topic);
  });

  /** Whether a message on `topic` reaches anyone: a live client or an offline session that keeps subscriptions. */
  const hasSubscriber = (topic: string) =>
    [...live.values(), ...offline.values()].some((session) =>
      [...session.subscriptions.keys()].some((filter) => topicMatches(filter.replace(/^\$share\/[^/]+\//, ''), topic)),
    );

  const server: Server = createServer(broker.handle);
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(options.mqtt.port, options.mqtt.host);
  try {
    await once(server, 'listening');
  } catch (error) {
    broker.close();
    throw error;
  }
  const address = server.address();
  const mqttPort = typeof address === 'object' && address ? address.port : options.mqtt.port;

  let api: RestApi;
  try {
    api = await startRestApi({
      host: options.api.host,
      port: options.api.port,
      key: options.api.key,
      secret: options.api.secret,
      node,
      live,
      offline,
      kick(session) {
        session.reason = 'kicked';
        session.client.close();
      },
      discard: (clientid) => offline.delete(clientid),
      publish(message) {
        // Rules see the message whether or not anyone receives it; the answer says whether someone did.
        const received = hasSubscriber(message.topic);
        const packet: PublishPacket & { messageExpiry?: number } = {
          cmd: 'publish',
          topic: message.topic,
          payload: message.payload,
          qos: message.qos,
          retain: message.retain,
          dup: false,
          ...(message.expiryIntervalS !== undefined ? { messageExpiry: Date.now() + message.expiryIntervalS * 1000 } : {}),
        };
        restPublishes.set(packet, { id: message.id, pubProps: message.pubProps });
        broker.publish(packet, (error?: Error) => {
          if (error) log.warn(`REST publish to ${message.topic} failed: ${error.message}`);
        });
        return received;
      },
      log,
    });
  } catch (error) {
    server.close();
    broker.close();
    throw error;
  }

  return {
    mqttPort,
    apiUrl: api.url,
    rules,
    async close(graceMs = 5000) {
      clearInterval(sweep);
      await api.close();
      server.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await Promise.all([...senders.values()].map((sender) => sender.close(graceMs)));
    },
  };
}

/** An HTTP action's delivery settings (§C): request_ttl, immediate retries, and the buffer's resume interval. */
function eventActionSettings(action: HoconObject) {
  const parameters = (action.parameters ?? {}) as HoconObject;
  const resource = (action.resource_opts ?? {}) as HoconObject;
  const requestTtlMs = resource.request_ttl === undefined ? 45_000 : durationMs(resource.request_ttl);
  const healthCheckMs = resource.health_check_interval === undefined ? 15_000 : durationMs(resource.health_check_interval);
  return {
    requestTtlMs,
    maxRetries: typeof parameters.max_retries === 'number' ? parameters.max_retries : 2,
    // EMQX's default resume_interval.
    resumeIntervalMs: Math.min(healthCheckMs, Math.floor(requestTtlMs / 3)),
  };
}

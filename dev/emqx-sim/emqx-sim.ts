import type { Client } from 'aedes';
import { checkAcl } from './acl.js';
import { readAuthnAnswer, readAuthzAnswer, type AuthnDecision } from './auth-answers.js';
import { durationMs, renderEmqxConfig } from './emqx-config.js';
import {
  AUTH_REQUEST_TIMEOUT_MS,
  AUTHORIZATION_DEFAULTS,
  AUTHZ_ACCESS,
  DISCONNECT_REASONS,
  DROP_REASONS,
  EVENT_COLUMNS,
  EVENT_TOPICS,
  pubProps,
  REST_PUBLISHER,
  SESSION,
  SESSION_DISCARDING_REASONS,
  type EventName,
} from './emqx-facts.js';
import { createEventOutbox, type DeliveryPlan, type SentEvent } from './event-outbox.js';
import { hoconArray, hoconAt, hoconObject, hoconString, type HoconObject } from './hocon.js';
import { createHttpAction, httpActionSettings, type ActionTiming, type EventResult, type HttpAction } from './http-action.js';
import { silentLog, type SimLog } from './log.js';
import { startMqttListeners, type MqttCore, type MqttListenerOptions, type MqttListeners, type MqttsListenerOptions } from './mqtt-listeners.js';
import { startRestApi, type ApiMessage, type PublishFailure, type PublishedMessage, type RecordedCall, type RestApi } from './rest-api.js';
import { createRuleEngine, type RuleEngine } from './rule-engine.js';
import { callService, type ServiceTransport } from './service.js';
import { createSessionRegistry, messageId, realFilter, type Message, type Session } from './sessions.js';
import { AUTHN_PLACEHOLDERS, AUTHZ_PLACEHOLDERS, renderAuthRequest, type Values } from './templates.js';

export type { DeliveryPlan, SentEvent } from './event-outbox.js';
export type { EventResult } from './http-action.js';
export type { PublishFailure, PublishedMessage, RecordedCall } from './rest-api.js';
export type { ServiceTransport } from './service.js';

/** Longest a timer can wait in Node; a later `expire_at` is re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The events the simulation raises: every one the facts name a topic for, and message.publish. */
const RAISED_EVENTS: ReadonlySet<string> = new Set<string>([...Object.values(EVENT_TOPICS), 'message.publish']);

export interface EmqxSimOptions {
  /** The service's EMQX_HOOK_TOKEN: emqx.conf is rendered with it, as the EMQX container's entrypoint does. */
  readonly hookToken: string;
  /** The service's EMQX_API_KEY and EMQX_API_SECRET, bootstrapped as the entrypoint writes them. */
  readonly apiKey: string;
  readonly apiSecret: string;
  /** Where the service answers the authenticator, the authorization source and the rules' HTTP action. */
  readonly service?: ServiceTransport;
  /** The REST API's address (default: an ephemeral port on 127.0.0.1). */
  readonly api?: MqttListenerOptions;
  /** MQTT over TCP (default: none, programmatic clients only). */
  readonly mqtt?: MqttListenerOptions;
  /** MQTT over TLS with this server certificate (default: none). */
  readonly mqtts?: MqttsListenerOptions;
  readonly log?: SimLog;
  /** Shorter pauses of the HTTP action than EMQX's. */
  readonly timing?: ActionTiming;
  /** Seeds the shuffles of a delivery plan, so a run can be replayed. */
  readonly seed?: number;
  /**
   * Keeps every event sent, REST call and REST publish for the caller to
   * read (`events`, `calls`, `published`), as the tests and the soak do
   * (default). Runs that go on for long (the local run, the bench) turn it
   * off: those lists would otherwise grow for as long as the run lasts.
   */
  readonly journal?: boolean;
}

/** A client that meets EMQX through calls instead of a socket. */
export interface ProgrammaticClientOptions {
  /** clean_session = false: the session keeps its subscriptions and queues messages while the client is away. */
  readonly persistent?: boolean;
  /** The client acknowledges each QoS 1 and 2 message it gets (default true). */
  readonly acks?: boolean;
  /** What the authenticator would have given it. */
  readonly clientAttrs?: Readonly<Record<string, string>>;
  readonly username?: string;
  readonly peerhost?: string;
}

export interface EmqxSim {
  /** The REST API's base URL (`EMQX_API_URL`). */
  readonly url: string;
  readonly apiKey: string;
  readonly apiSecret: string;
  readonly mqttPort: number | null;
  readonly mqttsPort: number | null;
  readonly rules: Pick<RuleEngine<unknown>, 'loaded' | 'skipped'>;
  /** Every REST request, in order. */
  readonly calls: readonly RecordedCall[];
  /** Every `POST /api/v5/publish`, in the order they were answered. */
  readonly published: readonly PublishedMessage[];
  /** Every event the HTTP action sent, once its delivery ended. */
  readonly events: readonly SentEvent[];
  /** Where the authenticator, the authorization source and the HTTP action send from now on. */
  useService(service: ServiceTransport | null): void;
  /** Where the HTTP action alone sends from now on; null sends no events at all. */
  sendEventsTo(service: ServiceTransport | null): void;
  deliveryPlan(plan: DeliveryPlan): void;
  /** Every REST request is answered this status until cleared (null). */
  failWith(status: number | null): void;
  /** The next publishes fail like this, one each (a status, `hang`: no answer, `reset`: the connection dropped); replaces what was left. */
  failNextPublishes(...failures: PublishFailure[]): void;
  /** A programmatic client connects; a connected one with the same id is taken over. */
  connect(clientid: string, options?: ProgrammaticClientOptions): Promise<void>;
  /** The client (connecting first when it is not) subscribes; resolves once the events it caused were delivered. */
  subscribe(clientid: string, filter: string, options?: ProgrammaticClientOptions & { qos?: 0 | 1 | 2 }): Promise<void>;
  /**
   * A connected programmatic client publishes (with MQTT 5 properties under
   * their MQTT names, as an MQTT 5 client would send them: `Correlation-Data`);
   * `delivered` settles with how its message.publish event's delivery ended.
   */
  publish(
    clientid: string,
    topic: string,
    payload: string | Buffer,
    options?: { qos?: 0 | 1 | 2; retain?: boolean; properties?: Readonly<Record<string, unknown>> },
  ): { id: string; delivered: Promise<EventResult[]> };
  /** The programmatic client goes away; a persistent session stays and queues. */
  disconnect(clientid: string): void;
  /** The session drops its next delivery with this reason (`expired`, `queue_full`). */
  dropNext(clientid: string, reason: string): void;
  /** Resolves once every event under way was delivered or given up. */
  settle(): Promise<void>;
  /** Disconnects every client (their events are sent), stops listening, and gives events under way `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

function enabled(entries: unknown[], what: string, usable: (entry: HoconObject) => boolean, log: SimLog): HoconObject[] {
  return entries.filter((entry, index): entry is HoconObject => {
    const ok = typeof entry === 'object' && entry !== null && !Array.isArray(entry) && usable(entry as HoconObject);
    if (!ok) log.warn(`${what}.${index} is not an enabled HTTP ${what === 'authentication' ? 'authenticator' : 'source'}; skipped`);
    return ok;
  });
}

/**
 * One simulation of EMQX 5.8, driven by deploy/emqx/emqx.conf as the EMQX
 * container's entrypoint renders it, for the local run, the tests, the soak
 * and the bench. EMQX's behaviour is read from emqx-facts.ts.
 *
 * - Clients: MQTT clients over TCP and TLS (aedes), and programmatic clients
 *   (a device subscribed, publishing and acknowledging through calls). Both
 *   have the same sessions: clean ones end with the connection, persistent
 *   ones keep their subscriptions and queue while their client is away.
 * - Every CONNECT asks the authenticator chain with its body template, before
 *   any takeover, so a refused newcomer leaves the live session alone; the
 *   answer's ACL decides publish and subscribe first, then the HTTP
 *   authorization sources, then `no_match`; `expire_at` ends the session.
 * - The rules of `rule_engine` run over the events sessions and routing
 *   raise, and their HTTP actions post to the service, retried and dropped as
 *   EMQX does, in the order a delivery plan allows.
 * - The REST API the service calls (client look-up, kick, publish), with
 *   failures injected on purpose; every call, publish and sent event recorded.
 *
 * Where it cannot be what EMQX is:
 * - MQTT 3.1 and 3.1.1 only (aedes has no MQTT 5): no properties on the wire
 *   (user properties, Message-Expiry-Interval and Session-Expiry-Interval
 *   never reach or come from a client; a persistent session is
 *   clean_session = false with EMQX's default expiry of 2 h), and CONNACK
 *   carries 3.1.1's return codes, not MQTT 5 reason codes.
 * - No shared subscriptions: a `$share/{group}/` filter is authorized as
 *   EMQX authorizes it, but not dispatched to one member of a group.
 * - One node, no cluster; everything in memory, lost when it stops.
 * - The HTTP action has no inflight window or max_buffer_bytes (its buffer
 *   never fills), and a run may shorten its pauses (`timing`): EMQX waits
 *   health_check_interval between rounds of retries. Over HTTP, the requests
 *   of the rules and of authentication and authorization share the pool of
 *   the transport they are given (8 connections, 100 pipelined on each, as
 *   EMQX keeps one per resource: httpTransport).
 * - No authorization cache: every check that reaches the HTTP source asks
 *   the service anew.
 * - Listeners bind where the options say, not where emqx.conf's `listeners`
 *   say; TLS is verify_none only (no client certificates, so the cert_*
 *   placeholders are empty).
 * - The REST API has only `GET` and `DELETE /api/v5/clients/{id}`,
 *   `POST /api/v5/publish` and `POST /api/v5/publish/bulk` (no dashboard).
 * - Rule SQL is a subset (see templates.ts); a rule beyond it is skipped
 *   with a warning.
 * - An MQTT client's acknowledgements are matched to its deliveries in
 *   order, and QoS 2 counts as acked at PUBCOMP (EMQX: at PUBREC); an MQTT
 *   client's offline queue has no max_mqueue_len (programmatic sessions
 *   have EMQX's, dropping the oldest with queue_full).
 * - Programmatic clients are let in without authentication and publish
 *   without authorization (they stand for devices EMQX already admitted);
 *   their peer addresses are made up.
 */
export async function startEmqxSim(options: EmqxSimOptions): Promise<EmqxSim> {
  const log = options.log ?? silentLog;
  const rendered = await renderEmqxConfig({
    DEVICE_LINK_HOOK_TOKEN: options.hookToken,
    DEVICE_LINK_API_KEY: options.apiKey,
    DEVICE_LINK_API_SECRET: options.apiSecret,
  });
  const { config } = rendered;
  const node = hoconString(config, 'node.name');
  const apiKeys = rendered.apiKeys
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [key = '', secret = ''] = line.split(':');
      return { key, secret };
    });
  const authenticators = enabled(hoconArray(config, 'authentication'), 'authentication', (entry) => entry.backend === 'http' && entry.enable !== false, log);
  const authorization = hoconObject(config, 'authorization');
  const authzSources = enabled(hoconArray(authorization, 'sources'), 'authorization.sources', (entry) => entry.type === 'http' && entry.enable !== false, log);
  const noMatch = (authorization.no_match ?? AUTHORIZATION_DEFAULTS.noMatch) === 'deny' ? 'deny' : 'allow';
  const disconnectOnDeny = (authorization.deny_action ?? AUTHORIZATION_DEFAULTS.denyAction) === 'disconnect';
  const timeoutOf = (source: HoconObject) => (source.request_timeout === undefined ? AUTH_REQUEST_TIMEOUT_MS : durationMs(source.request_timeout));

  let authTarget: ServiceTransport | null = options.service ?? null;
  let eventTarget: ServiceTransport | null = options.service ?? null;
  const actions = new Map<string, HttpAction>();
  for (const [name, action] of Object.entries((hoconAt(config, 'actions.http') ?? {}) as HoconObject)) {
    actions.set(`http:${name}`, createHttpAction({ settings: httpActionSettings(action as HoconObject, options.timing), target: () => eventTarget, log }));
  }
  const journal = options.journal ?? true;
  const outbox = createEventOutbox({ actions, seed: options.seed ?? Math.floor(Math.random() * 2 ** 32), journal, log });
  const rules = createRuleEngine({ config, emitted: RAISED_EVENTS, dispatch: (action, request, label) => outbox.post(action, request, label), log });
  const sessions = createSessionRegistry();
  let mqtt: MqttListeners | null = null;

  function raise(name: EventName, fields: Values): Promise<EventResult[]> {
    const columns = EVENT_COLUMNS[name];
    for (const column of Object.keys(fields)) if (!columns.includes(column)) throw new Error(`EMQX 5.8 gives ${name} no column ${column}`);
    try {
      return Promise.all(rules.fire({ ...fields, event: name, timestamp: Date.now(), node }));
    } catch (error) {
      // A rule that cannot render its output must not take the simulation down; EMQX counts it as a failed rule.
      log.warn(`rules on ${name} failed: ${error instanceof Error ? error.message : String(error)}`);
      return Promise.resolve([]);
    }
  }

  // ---------------------------------------------------------------------------
  // Event columns

  const publisherColumns = (message: Message) => ({
    clientid: message.from?.clientid ?? REST_PUBLISHER,
    username: message.from?.username,
    peerhost: message.from?.peerhost,
    peername: message.from?.peername,
  });
  const messageColumns = (message: Message) => ({
    id: message.id,
    ...publisherColumns(message),
    payload: message.payload,
    topic: message.topic,
    qos: message.qos,
    flags: { dup: false, retain: message.retain },
    pub_props: pubProps(message.properties),
    publish_received_at: message.receivedAt,
  });
  const deliveryColumns = (session: Session, message: Message, qos: number, dup: boolean): Values => ({
    id: message.id,
    from_clientid: message.from?.clientid ?? REST_PUBLISHER,
    from_username: message.from?.username,
    clientid: session.clientid,
    username: session.username,
    payload: message.payload,
    peerhost: session.peerhost,
    peername: session.peername,
    topic: message.topic,
    qos,
    flags: { dup, retain: message.retain },
    pub_props: pubProps(message.properties),
    publish_received_at: message.receivedAt,
  });
  const connectionColumns = (session: Session) => ({
    clientid: session.clientid,
    username: session.username,
    peername: session.peername,
    sockname: session.sockname,
    proto_name: 'MQTT',
    proto_ver: session.protoVer,
    connected_at: session.connectedAt,
    client_attrs: session.clientAttrs,
  });

  // ---------------------------------------------------------------------------
  // Sessions and routing

  function open(session: Session): Promise<EventResult[]>[] {
    const previous = sessions.live.get(session.clientid);
    if (previous && previous !== session) {
      previous.reason = session.cleanStart ? DISCONNECT_REASONS.discarded : DISCONNECT_REASONS.takenover;
      // An MQTT predecessor is closed by aedes itself when the newcomer registers.
      if (previous.link.kind === 'programmatic') end(previous, previous.reason);
    }
    session.connected = true;
    session.connectedAt = Date.now();
    sessions.live.set(session.clientid, session);
    sessions.offline.delete(session.clientid);
    log.info(`${session.clientid}: connected from ${session.peername}`);
    const events = [
      raise('client.connected', {
        ...connectionColumns(session),
        mountpoint: undefined,
        keepalive: session.keepalive,
        clean_start: session.cleanStart,
        receive_maximum: SESSION.maxInflight,
        expiry_interval: session.cleanStart ? 0 : SESSION.expiryIntervalS,
        is_bridge: false,
        conn_props: {},
      }),
    ];
    // A resumed session sends what it held right after CONNACK, in order.
    if (session.link.kind === 'programmatic') {
      for (const { message, qos } of session.link.queue.splice(0)) events.push(...deliver(session, message, qos, false));
    }
    return events;
  }

  function end(session: Session, reason: string): Promise<EventResult[]>[] {
    if (!session.connected) return [];
    session.connected = false;
    session.disconnectedAt = Date.now();
    clearTimeout(session.expiry);
    if (sessions.live.get(session.clientid) === session) sessions.live.delete(session.clientid);
    if (!session.cleanStart && !SESSION_DISCARDING_REASONS.has(reason)) sessions.offline.set(session.clientid, session);
    log.info(`${session.clientid}: disconnected (${reason})`);
    return [
      raise('client.disconnected', {
        ...connectionColumns(session),
        reason,
        disconn_props: {},
        disconnected_at: session.disconnectedAt,
      }),
    ];
  }

  /** What goes to a connected session's client, and the events that follow; for an MQTT client its delivery event goes back to aedes. */
  function forward(session: Session, message: Message, qos: number, dup: boolean): { events: Promise<EventResult[]>[]; delivery: Values | null } {
    const columns = deliveryColumns(session, message, qos, dup);
    const dropped = session.dropNext.shift() ?? (message.expiresAt !== undefined && Date.now() > message.expiresAt ? DROP_REASONS.expired : undefined);
    if (dropped !== undefined) return { events: [raise('delivery.dropped', { ...columns, reason: dropped })], delivery: null };
    return { events: [raise('message.delivered', columns)], delivery: columns };
  }

  /** A programmatic client gets the message (and acknowledges it at once when it does). */
  function deliver(session: Session, message: Message, qos: number, dup: boolean): Promise<EventResult[]>[] {
    const { events, delivery } = forward(session, message, qos, dup);
    if (delivery && qos > 0 && session.link.kind === 'programmatic' && session.link.acks) events.push(raise('message.acked', { ...delivery, puback_props: {} }));
    return events;
  }

  /** A persistent session holds the message for its client; a full queue drops its oldest. */
  function hold(session: Session, message: Message, qos: number): Promise<EventResult[]>[] {
    if (session.link.kind !== 'programmatic' || (qos === 0 && !SESSION.queuesQos0)) return [];
    session.link.queue.push({ message, qos });
    if (session.link.queue.length <= SESSION.maxQueueLength) return [];
    const oldest = session.link.queue.shift();
    return oldest ? [raise('delivery.dropped', { ...deliveryColumns(session, oldest.message, oldest.qos, false), reason: DROP_REASONS.queueFull })] : [];
  }

  /**
   * A published message: its message.publish event, then every session
   * subscribed to it, or message.dropped when there is none. MQTT clients get
   * it through aedes, which routes a client's own publishes by itself.
   */
  function route(message: Message, routedByAedes: boolean): { received: boolean; events: Promise<EventResult[]>[] } {
    const events = [raise('message.publish', { ...messageColumns(message), client_attrs: message.from?.clientAttrs ?? {} })];
    const targets = sessions.subscribers(message.topic);
    if (targets.length === 0) {
      events.push(raise('message.dropped', { ...messageColumns(message), reason: DROP_REASONS.noSubscribers }));
      return { received: false, events };
    }
    let viaAedes = false;
    for (const { session, qos: granted } of targets) {
      const qos = SESSION.upgradeQos ? granted : Math.min(message.qos, granted);
      if (session.link.kind === 'mqtt') viaAedes = true;
      else events.push(...(session.connected ? deliver(session, message, qos, false) : hold(session, message, qos)));
    }
    if (viaAedes && !routedByAedes) mqtt?.publish(message);
    return { received: true, events };
  }

  function newMessage(fields: Omit<Message, 'id' | 'receivedAt' | 'expiresAt'>): Message {
    const receivedAt = Date.now();
    const expiry = fields.properties['Message-Expiry-Interval'];
    return { ...fields, id: messageId(), receivedAt, ...(typeof expiry === 'number' ? { expiresAt: receivedAt + expiry * 1000 } : {}) };
  }

  function armExpiry(session: Session, atMs: number): void {
    session.expiry = setTimeout(
      () => {
        if (Date.now() < atMs) return armExpiry(session, atMs);
        session.reason = DISCONNECT_REASONS.notAuthorized;
        log.info(`${session.clientid}: authentication expired (expire_at), disconnecting`);
        mqtt?.close(session);
      },
      Math.min(Math.max(0, atMs - Date.now()), MAX_TIMER_MS),
    );
  }

  // ---------------------------------------------------------------------------
  // Authentication and authorization

  async function authenticate(values: Values): Promise<AuthnDecision> {
    let decision: AuthnDecision = { result: 'ignore', why: 'no authenticator' };
    // The chain: ignore passes to the next authenticator; allow or deny ends it.
    for (const authenticator of authenticators) {
      const request = renderAuthRequest(authenticator, values, AUTHN_PLACEHOLDERS);
      try {
        if (!authTarget) throw new Error('no service to ask');
        decision = readAuthnAnswer(await callService(authTarget, request, timeoutOf(authenticator)), Date.now());
      } catch (error) {
        decision = { result: 'ignore', why: error instanceof Error ? error.message : String(error) };
      }
      if (decision.result !== 'ignore') break;
    }
    return decision;
  }

  async function authorize(session: Session, action: 'publish' | 'subscribe', topic: string, qos: number, retain: boolean): Promise<'allow' | 'deny'> {
    if (session.superuser) return 'allow';
    const filter = action === 'subscribe' ? realFilter(topic) : topic;
    const acl = checkAcl(session.acl, { action, topic: filter, qos, retain, clientid: session.clientid, username: session.username });
    if (acl !== 'nomatch') return acl;
    for (const source of authzSources) {
      const values = {
        clientid: session.clientid,
        username: session.username,
        peerhost: session.peerhost,
        topic: filter,
        action,
        access: AUTHZ_ACCESS[action],
        qos: String(qos),
        retain: String(retain),
        proto_name: 'MQTT',
        client_attrs: session.clientAttrs,
      };
      try {
        if (!authTarget) throw new Error('no service to ask');
        const decision = readAuthzAnswer(await callService(authTarget, renderAuthRequest(source, values, AUTHZ_PLACEHOLDERS), timeoutOf(source)));
        if (decision) return decision;
      } catch {
        // A timeout or connection error passes to the next source.
      }
    }
    return noMatch;
  }

  const mqttCore: MqttCore = {
    sessions,
    disconnectOnDeny,
    authenticate,
    authorize,
    admit(client: Client, decision, connection) {
      const kept = client.clean ? undefined : sessions.find(client.id);
      const session: Session = {
        clientid: client.id,
        username: connection.username,
        peerhost: connection.peerhost,
        peername: connection.peername,
        sockname: connection.sockname,
        protoVer: client.version,
        keepalive: connection.keepalive,
        cleanStart: client.clean,
        superuser: decision.superuser,
        clientAttrs: decision.clientAttrs,
        acl: decision.acl,
        link: { kind: 'mqtt', client, listener: connection.listener, unacked: [] },
        connected: false,
        connectedAt: 0,
        disconnectedAt: 0,
        subscriptions: new Map(kept?.subscriptions ?? []),
        dropNext: [],
      };
      if (decision.expireAt !== undefined) armExpiry(session, decision.expireAt * 1000);
      // The newcomer wins: the live connection ends once aedes registers this one.
      const previous = sessions.live.get(client.id);
      if (previous && previous.link.kind === 'mqtt') previous.reason = client.clean ? DISCONNECT_REASONS.discarded : DISCONNECT_REASONS.takenover;
      return session;
    },
    open: (session) => void open(session),
    end: (session, reason) => void end(session, reason),
    subscribed(session, filter, qos) {
      sessions.subscribe(session, filter, qos);
      void raise('session.subscribed', {
        clientid: session.clientid,
        username: session.username,
        peerhost: session.peerhost,
        peername: session.peername,
        sub_props: {},
        topic: filter,
        qos,
        client_attrs: session.clientAttrs,
      });
    },
    unsubscribed: (session, filter) => void session.subscriptions.delete(filter),
    received: (session, packet, denied) =>
      newMessage({ topic: packet.topic, payload: packet.payload as Buffer, qos: packet.qos, retain: packet.retain, from: session, properties: {}, ...(denied ? { denied } : {}) }),
    routed: (message) => void route(message, true),
    forward(session, message, qos, dup) {
      return forward(session, message, qos, dup).delivery;
    },
    acked: (session, delivery) => void raise('message.acked', { ...delivery, puback_props: {} }),
  };

  // ---------------------------------------------------------------------------
  // Programmatic clients

  let nextPort = 50_000;
  function programmaticSession(clientid: string, options: ProgrammaticClientOptions, kept: Session | undefined): Session {
    const persistent = options.persistent ?? (kept ? !kept.cleanStart : false);
    const resumed = persistent && kept && !kept.cleanStart ? kept : undefined;
    const peerhost = options.peerhost ?? '127.0.0.1';
    nextPort = nextPort >= 65_535 ? 50_000 : nextPort + 1;
    return {
      clientid,
      username: options.username ?? kept?.username ?? clientid,
      peerhost,
      peername: `${peerhost}:${nextPort}`,
      sockname: '127.0.0.1:1883',
      protoVer: 4,
      keepalive: 60,
      cleanStart: !persistent,
      superuser: false,
      clientAttrs: options.clientAttrs ?? kept?.clientAttrs ?? {},
      acl: [],
      link: {
        kind: 'programmatic',
        acks: options.acks ?? (kept?.link.kind === 'programmatic' ? kept.link.acks : true),
        queue: resumed?.link.kind === 'programmatic' ? resumed.link.queue : [],
      },
      connected: false,
      connectedAt: 0,
      disconnectedAt: 0,
      subscriptions: new Map(resumed?.subscriptions ?? []),
      dropNext: [...(kept?.dropNext ?? [])],
    };
  }

  function connectProgrammatic(clientid: string, options: ProgrammaticClientOptions): Promise<EventResult[]>[] {
    const kept = sessions.find(clientid);
    const session = programmaticSession(clientid, options, kept);
    if (kept && !kept.connected) sessions.offline.delete(clientid);
    if (kept?.connected && kept.link.kind === 'mqtt') {
      kept.reason = session.cleanStart ? DISCONNECT_REASONS.discarded : DISCONNECT_REASONS.takenover;
      mqtt?.close(kept);
    }
    return open(session);
  }

  function liveProgrammatic(clientid: string): Session {
    const session = sessions.live.get(clientid);
    if (!session || session.link.kind !== 'programmatic') throw new Error(`${clientid} is not a connected programmatic client`);
    return session;
  }

  const settled = async (events: Promise<EventResult[]>[]) => {
    await Promise.all(events);
  };

  // ---------------------------------------------------------------------------
  // Listeners

  let api: RestApi | undefined;
  try {
    mqtt = options.mqtt || options.mqtts ? await startMqttListeners({ core: mqttCore, ...(options.mqtt ? { tcp: options.mqtt } : {}), ...(options.mqtts ? { ssl: options.mqtts } : {}), log }) : null;
    api = await startRestApi({
      host: options.api?.host ?? '127.0.0.1',
      port: options.api?.port ?? 0,
      keys: apiKeys,
      journal,
      log,
      core: {
        node,
        sessions,
        kick(clientid) {
          const session = sessions.live.get(clientid);
          if (session) {
            session.reason = DISCONNECT_REASONS.kicked;
            if (session.link.kind === 'mqtt') mqtt?.close(session);
            else end(session, DISCONNECT_REASONS.kicked);
            return true;
          }
          return sessions.offline.delete(clientid);
        },
        publish(fields: ApiMessage) {
          // The REST API publishes without authorization; rules see the message all the same.
          const message = newMessage({ ...fields, from: null });
          const { received, events } = route(message, false);
          return { id: message.id, received, answerAfter: outbox.answerAfterEvents() ? Promise.all(events) : null };
        },
      },
    });
  } catch (error) {
    await mqtt?.stop();
    sessions.close();
    throw error;
  }
  const rest = api;

  return {
    url: rest.url,
    apiKey: options.apiKey,
    apiSecret: options.apiSecret,
    mqttPort: mqtt?.tcpPort ?? null,
    mqttsPort: mqtt?.sslPort ?? null,
    rules,
    calls: rest.calls,
    published: rest.published,
    events: outbox.sent,
    useService(service) {
      authTarget = service;
      eventTarget = service;
    },
    sendEventsTo(service) {
      eventTarget = service;
    },
    deliveryPlan(plan) {
      outbox.plan = plan;
    },
    failWith: (status) => rest.failWith(status),
    failNextPublishes: (...failures) => rest.failNextPublishes(failures),
    connect: (clientid, clientOptions = {}) => settled(connectProgrammatic(clientid, clientOptions)),
    subscribe(clientid, filter, clientOptions = {}) {
      const events = sessions.live.get(clientid)?.link.kind === 'programmatic' ? [] : connectProgrammatic(clientid, clientOptions);
      const session = liveProgrammatic(clientid);
      const qos = clientOptions.qos ?? 1;
      sessions.subscribe(session, filter, qos);
      events.push(
        raise('session.subscribed', {
          clientid,
          username: session.username,
          peerhost: session.peerhost,
          peername: session.peername,
          sub_props: {},
          topic: filter,
          qos,
          client_attrs: session.clientAttrs,
        }),
      );
      return settled(events);
    },
    publish(clientid, topic, payload, publishOptions = {}) {
      const session = liveProgrammatic(clientid);
      const message = newMessage({
        topic,
        payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
        qos: publishOptions.qos ?? 0,
        retain: publishOptions.retain ?? false,
        from: session,
        properties: { ...publishOptions.properties },
      });
      const [delivered = Promise.resolve([])] = route(message, false).events;
      return { id: message.id, delivered };
    },
    disconnect(clientid) {
      const session = sessions.live.get(clientid);
      if (session?.link.kind === 'programmatic') void end(session, DISCONNECT_REASONS.normal);
    },
    dropNext(clientid, reason) {
      sessions.find(clientid)?.dropNext.push(reason);
    },
    settle: () => outbox.settle(),
    async close(graceMs = 0) {
      await rest.close();
      await mqtt?.stop();
      sessions.close();
      await outbox.close(graceMs);
    },
  };
}

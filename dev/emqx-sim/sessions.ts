import { randomBytes } from 'node:crypto';
import type { Client } from 'aedes';
import type { AclRule } from './acl.js';
import { MESSAGE_ID, SESSION, SHARED_SUBSCRIPTION_PREFIX } from './emqx-facts.js';
import { topicMatches, type Values } from './templates.js';

/** A message EMQX routes: published by a client, a programmatic client or the REST API. */
export interface Message {
  readonly id: string;
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  /** The publishing session; null for the REST API. */
  readonly from: Session | null;
  /** MQTT property names as EMQX keeps them (`User-Property` as a map, `Message-Expiry-Interval`, …). */
  readonly properties: Readonly<Record<string, unknown>>;
  readonly receivedAt: number;
  /** When the Message-Expiry-Interval ends, if it has one. */
  readonly expiresAt?: number;
  /** Refused by authorization with deny_action = ignore: acknowledged, never delivered. */
  readonly denied?: boolean;
}

/** The two ways a session meets its client: an MQTT connection through aedes, or calls of a test, the soak or the bench. */
export type Link =
  | {
      readonly kind: 'mqtt';
      readonly client: Client;
      readonly listener: 'tcp' | 'ssl';
      /**
       * Delivery events of the QoS 1 and 2 messages sent and not yet
       * acknowledged, oldest first: aedes reports an acknowledgement of a
       * clean session without its message, and clients acknowledge in the
       * order they received.
       */
      readonly unacked: Values[];
    }
  | {
      readonly kind: 'programmatic';
      /** Whether the client acknowledges what it gets at QoS 1 and 2. */
      readonly acks: boolean;
      /** What the session holds while its client is away (a persistent session). */
      readonly queue: Array<{ readonly message: Message; readonly qos: number }>;
    };

/** A client's session, from the authenticator's allow on. */
export interface Session {
  readonly clientid: string;
  readonly username: string;
  readonly peerhost: string;
  readonly peername: string;
  readonly sockname: string;
  readonly protoVer: number;
  readonly keepalive: number;
  /** MQTT 3.1.1's clean session flag: false keeps the session (and what it receives) while the client is away. */
  readonly cleanStart: boolean;
  readonly superuser: boolean;
  readonly clientAttrs: Readonly<Record<string, string>>;
  /** The authn answer's ACL, checked before the authorization sources. */
  readonly acl: readonly AclRule[];
  readonly link: Link;
  connected: boolean;
  connectedAt: number;
  disconnectedAt: number;
  /** Topic filter → granted QoS. */
  readonly subscriptions: Map<string, number>;
  /** Reasons the session drops its next deliveries with, in order. */
  readonly dropNext: string[];
  /** Why the broker ends the connection (kick, takeover, expiry); unset when the client or the network ends it. */
  reason?: string;
  expiry?: NodeJS.Timeout;
}

export const messageId = () => randomBytes(MESSAGE_ID.bytes).toString('hex').toUpperCase();

/** The filter a subscription is matched by: a shared one without `$share/{group}/`. */
export const realFilter = (filter: string) => filter.replace(SHARED_SUBSCRIPTION_PREFIX, '');

/** A filter without wildcards that is not a shared subscription (`$share/`) or a `$queue/` one: it matches its own topic alone. */
const PLAIN_FILTER = /^(?!\$)[^+#]*$/;

/**
 * The sessions of one node: the connected one of each client id, and the
 * persistent ones whose client is away until they expire.
 */
export function createSessionRegistry() {
  const live = new Map<string, Session>();
  const offline = new Map<string, Session>();
  /**
   * The routes: filter → the client ids that ever subscribed to it, so that a
   * message asks the sessions that may take it rather than every session (a
   * fleet of 10,000 subscribed devices made each message a scan of 10,000).
   * Entries are never removed: the sessions found are checked against their
   * current subscriptions, and the pairs are bounded by the clients' filters.
   */
  const routes = new Map<string, Set<string>>();
  /** The filters a topic must be matched against (wildcards, `$share/`, `$queue/`). */
  const patterns = new Set<string>();

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [clientid, session] of offline) if (now - session.disconnectedAt > SESSION.expiryIntervalS * 1000) offline.delete(clientid);
  }, 60_000);
  sweep.unref();

  /** The QoS a session gets `topic` at, from the best of its matching subscriptions; null when none matches. */
  function grantedQos(session: Session, topic: string): number | null {
    let best: number | null = null;
    for (const [filter, qos] of session.subscriptions) {
      // A plain filter matches only its own topic: compared as it is, since every message asks every session.
      const matches = PLAIN_FILTER.test(filter) ? filter === topic : topicMatches(realFilter(filter), topic);
      if (matches) best = Math.max(best ?? 0, qos);
    }
    return best;
  }

  return {
    live,
    offline,
    /** The session known for a client id: connected, or kept for its client. */
    find: (clientid: string) => live.get(clientid) ?? offline.get(clientid),
    /**
     * Records a subscription of the session: every filter a session gains
     * comes through here, but for those a client's next session takes over
     * from its kept one, whose routes (by client id) are already there.
     */
    subscribe(session: Session, filter: string, qos: number) {
      session.subscriptions.set(filter, qos);
      let clients = routes.get(filter);
      if (!clients) routes.set(filter, (clients = new Set()));
      clients.add(session.clientid);
      if (!PLAIN_FILTER.test(filter)) patterns.add(filter);
    },
    /** Every session a message on `topic` reaches, with the QoS of its subscription: the connected ones first. */
    subscribers(topic: string): Array<{ session: Session; qos: number }> {
      const clients = new Set(routes.get(topic));
      for (const filter of patterns) {
        if (topicMatches(realFilter(filter), topic)) for (const clientid of routes.get(filter) ?? []) clients.add(clientid);
      }
      const found: Array<{ session: Session; qos: number }> = [];
      for (const sessions of [live, offline]) {
        for (const clientid of clients) {
          const session = sessions.get(clientid);
          const qos = session ? grantedQos(session, topic) : null;
          if (session && qos !== null) found.push({ session, qos });
        }
      }
      return found;
    },
    grantedQos,
    close: () => clearInterval(sweep),
  };
}

export type SessionRegistry = ReturnType<typeof createSessionRegistry>;

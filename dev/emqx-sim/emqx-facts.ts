/**
 * What EMQX 5.8 does where the service meets it, as typed data. Each fact
 * names where it comes from in EMQX's source at tag v5.8.9 (paths in the
 * emqx/emqx repository). The simulation reads these and restates none of
 * them, so correcting a fact here corrects the local run, the tests, the
 * soak and the bench at once.
 */

// ---------------------------------------------------------------------------
// Request templates of the HTTP authenticator and authorization source

/** Placeholders each template may use; `client_attrs.NAME` too. */
export const PLACEHOLDERS = {
  /** apps/emqx_auth/include/emqx_authn.hrl, AUTHN_DEFAULT_ALLOWED_VARS. */
  authn: ['clientid', 'username', 'password', 'peerhost', 'cert_subject', 'cert_common_name', 'cert_pem', 'zone'],
  /** apps/emqx_auth_http/src/emqx_authz_http.erl, ALLOWED_VARS ++ ALLOWED_VARS_RICH_ACTIONS. */
  authz: ['clientid', 'username', 'peerhost', 'proto_name', 'mountpoint', 'topic', 'action', 'cert_subject', 'cert_common_name', 'cert_pem', 'access', 'qos', 'retain'],
  /** VAR_NS_CLIENT_ATTRS in both lists: `${client_attrs.NAME}`. */
  namespace: 'client_attrs',
} as const;

/** How a placeholder without a value renders. */
export const UNDEFINED_RENDERS_AS = {
  /** apps/emqx_auth/src/emqx_auth_utils.erl, render_var/2: an allowed but undefined binding is "". */
  auth: '',
  /** apps/emqx_utils/src/emqx_template.erl: rule output and HTTP action templates print the atom undefined. */
  rule: 'undefined',
} as const;

/** apps/emqx_auth_http/src/emqx_authz_http.erl, LEGACY_SUBSCRIBE_ACTION and LEGACY_PUBLISH_ACTION: `${access}`. */
export const AUTHZ_ACCESS = { subscribe: '1', publish: '2' } as const;

/** apps/emqx/src/emqx_channel.erl, do_check_sub_authzs2/3: a shared subscription is authorized for its filter without `$share/{group}/`. */
export const SHARED_SUBSCRIPTION_PREFIX = /^\$share\/[^/]+\//;

// ---------------------------------------------------------------------------
// Authentication and authorization answers

/** apps/emqx_auth_http/src/emqx_authn_http.erl, authenticate/2 and handle_response/2. */
export const AUTHN_ANSWER = {
  /** 204 allows without a body. */
  allowStatus: 204,
  /** 200 with a JSON body decides through `result`; any other status, a timeout or a connection error is ignore. */
  decideStatus: 200,
  /** A `result` other than these, or none, is ignore. */
  results: ['allow', 'deny', 'ignore'],
  /** apps/emqx_auth/src/emqx_authn/emqx_authn_utils.erl, is_superuser/1: true, "true", "1" and integers ≥ 1. */
  superuser: [true, 'true', '1'],
  /** emqx_authn_utils.erl, client_attrs/1: keys outside this are dropped; a value that is not a string is ignore. */
  clientAttrKey: /^[A-Za-z0-9]+[A-Za-z0-9-_]*$/,
  /** emqx_authn_http.erl, expire_sec/1: whole Unix seconds in the future, else the connect fails. */
  expireAtUnit: 's',
} as const;

/** apps/emqx_auth_http/src/emqx_authn_http_schema.erl, request_timeout/1: how long the authenticator and the authorization source wait when emqx.conf does not say; no answer then is ignore. */
export const AUTH_REQUEST_TIMEOUT_MS = 5000;

/** apps/emqx_auth_http/src/emqx_authz_http.erl, authorize/4: 204 allows, 200 `result` decides; anything else is no match here. */
export const AUTHZ_ANSWER = { allowStatus: 204, decideStatus: 200, results: ['allow', 'deny'] } as const;

/** apps/emqx/src/emqx_schema.erl, authz_fields/0: what EMQX does when emqx.conf does not say. */
export const AUTHORIZATION_DEFAULTS = { noMatch: 'allow', denyAction: 'ignore' } as const;

/** apps/emqx_auth/src/emqx_authz/emqx_authz_rule.erl, compile_topic/1: placeholders an authn answer's ACL topics may use; `eq ` before a topic matches it literally. */
export const ACL_TOPIC_PLACEHOLDERS = ['clientid', 'username', 'cert_common_name', 'zone'] as const;

/** apps/emqx/src/emqx_reason_codes.erl, compat(connack, _): the MQTT 3.1.1 return codes clients see. */
export const CONNACK = {
  /** 16#87 not authorized (a deny, every authenticator ignoring, a bad answer). */
  notAuthorized: 5,
  /** 16#88 server unavailable. */
  serverUnavailable: 3,
} as const;

/** emqx_reason_codes.erl, compat(suback, Code ≥ 16#80): a refused subscription. */
export const SUBACK_FAILURE = 128;

// ---------------------------------------------------------------------------
// Rule-engine events: names, topics and columns

/** apps/emqx_rule_engine/src/emqx_rule_events.erl, event_name/1: the event a `FROM "$events/…"` selects. */
export const EVENT_TOPICS = {
  '$events/client_connected': 'client.connected',
  '$events/client_disconnected': 'client.disconnected',
  '$events/session_subscribed': 'session.subscribed',
  '$events/message_delivered': 'message.delivered',
  '$events/message_acked': 'message.acked',
  '$events/message_dropped': 'message.dropped',
  '$events/delivery_dropped': 'delivery.dropped',
} as const;

export type EventName = (typeof EVENT_TOPICS)[keyof typeof EVENT_TOPICS] | 'message.publish';

/** emqx_rule_events.erl, with_basic_columns/3: on every event. */
export const BASIC_COLUMNS = ['event', 'timestamp', 'node'] as const;

/** emqx_rule_events.erl, eventmsg_publish/1, eventmsg_connected/2 … eventmsg_delivery_dropped/3: each event's columns besides the basic ones. */
export const EVENT_COLUMNS: Readonly<Record<EventName, readonly string[]>> = {
  'message.publish': ['id', 'clientid', 'username', 'payload', 'peerhost', 'peername', 'topic', 'qos', 'flags', 'pub_props', 'publish_received_at', 'client_attrs'],
  'client.connected': [
    'clientid',
    'username',
    'mountpoint',
    'peername',
    'sockname',
    'proto_name',
    'proto_ver',
    'keepalive',
    'clean_start',
    'receive_maximum',
    'expiry_interval',
    'is_bridge',
    'conn_props',
    'connected_at',
    'client_attrs',
  ],
  'client.disconnected': ['reason', 'clientid', 'username', 'peername', 'sockname', 'proto_name', 'proto_ver', 'disconn_props', 'disconnected_at', 'connected_at', 'client_attrs'],
  'session.subscribed': ['clientid', 'username', 'peerhost', 'peername', 'sub_props', 'topic', 'qos', 'client_attrs'],
  'message.dropped': ['id', 'reason', 'clientid', 'username', 'payload', 'peerhost', 'peername', 'topic', 'qos', 'flags', 'pub_props', 'publish_received_at'],
  'message.delivered': ['id', 'from_clientid', 'from_username', 'clientid', 'username', 'payload', 'peerhost', 'peername', 'topic', 'qos', 'flags', 'pub_props', 'publish_received_at'],
  'message.acked': [
    'id',
    'from_clientid',
    'from_username',
    'clientid',
    'username',
    'payload',
    'peerhost',
    'peername',
    'topic',
    'qos',
    'flags',
    'pub_props',
    'puback_props',
    'publish_received_at',
  ],
  'delivery.dropped': ['id', 'reason', 'from_clientid', 'from_username', 'clientid', 'username', 'payload', 'peerhost', 'peername', 'topic', 'qos', 'flags', 'pub_props', 'publish_received_at'],
};

/** apps/emqx_rule_engine/src/emqx_rule_runtime.erl: the rule's own column beside the event's. */
export const RULE_METADATA_COLUMN = 'metadata';

/** apps/emqx_rule_engine/src/emqx_rule_engine_schema.erl, ignore_sys_message: $SYS messages raise no message.publish by default. */
export const IGNORE_SYS_MESSAGE_DEFAULT = true;

/** apps/emqx_management/src/emqx_mgmt_api_publish.erl, make_message/1: a REST publish comes from `http_api`, with no username. */
export const REST_PUBLISHER = 'http_api';

/** apps/emqx/src/emqx_guid.erl, to_hexstr/1: a message id is 16 bytes as upper-case hex. */
export const MESSAGE_ID = { bytes: 16, pattern: /^[0-9A-F]{32}$/ } as const;

/** emqx_rule_events.erl, printable_maps/1: `pub_props` always has `User-Property` (a map, `{}` for none), and `User-Property-Pairs` beside any. */
export function pubProps(properties: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const printable: Record<string, unknown> = { 'User-Property': {} };
  for (const [name, value] of Object.entries(properties)) {
    if (name === 'User-Property' && value !== null && typeof value === 'object') {
      printable['User-Property'] = value;
      printable['User-Property-Pairs'] = Object.entries(value).map(([key, item]) => ({ key, value: item }));
    } else {
      printable[name] = value;
    }
  }
  return printable;
}

// ---------------------------------------------------------------------------
// The REST API (`/api/v5`, HTTP Basic with an API key)

export interface RestAnswer {
  readonly status: number;
  /** An object; an array of them for `/publish/bulk`. */
  readonly body?: Readonly<Record<string, unknown>> | readonly Readonly<Record<string, unknown>>[];
}

/** Status codes and bodies of the calls the service makes. */
export const REST_ANSWERS = {
  /** apps/emqx_dashboard/src/emqx_dashboard.erl, api_key_authorize/4. */
  badApiKey: { status: 401, body: { code: 'BAD_API_KEY_OR_SECRET', message: 'Check api_key/api_secret' } },
  /** apps/emqx_management/src/emqx_mgmt_api_clients.erl, lookup/1 and kickout/1 (CLIENTID_NOT_FOUND). */
  clientNotFound: { status: 404, body: { code: 'CLIENTID_NOT_FOUND', message: 'Client ID not found' } },
  /** emqx_mgmt_api_clients.erl, kickout/1: the session ends with reason `kicked`. */
  kicked: { status: 204 },
  /** emqx_mgmt_api_publish.erl, publish_result_to_http_reply/2: handed to at least one subscriber (or a session holding it). */
  published: (id: string): RestAnswer => ({ status: 200, body: { id } }),
  /** emqx_mgmt_api_publish.erl: matched no subscriber (RC 16); no id. */
  noSubscribers: { status: 202, body: { reason_code: 16, message: 'no_matching_subscribers' } },
  /** emqx_mgmt_api_publish.erl, make_bad_req_reply(invalid_topic_name): RC 144. */
  topicInvalid: { status: 400, body: { reason_code: 144, message: 'topic_name_invalid' } },
  /** make_bad_req_reply(packet_too_large): RC 151, as PUBACK has no packet-too-large code. */
  packetTooLarge: { status: 400, body: { reason_code: 151, message: 'packet_too_large' } },
  /** decode_payload(base64, _) failing: RC 131 with the reason printed. */
  badBase64: { status: 400, body: { reason_code: 131, message: 'decode_base64_payload_failed' } },
  /** publish_result_to_http_reply/2: matched, but no delivery succeeded (e.g. while EMQX restarts). */
  dispatchFailed: { status: 503, body: { reason_code: 131, message: 'failed_to_dispatch' } },
  /** apps/emqx_dashboard/src/emqx_dashboard_swagger.erl: a body its schema refuses. */
  badRequest: (message: string): RestAnswer => ({ status: 400, body: { code: 'BAD_REQUEST', message } }),
  /** apps/emqx_dashboard/src/emqx_dashboard.erl: a route that does not exist. */
  pathNotFound: { status: 404, body: { code: 'NOT_FOUND', message: 'Request Path Not Found' } },
} as const;

/** emqx_mgmt_api_publish.erl, fields(message) defaults and size_limit/0 (mqtt.max_packet_size, 1 MB). */
export const PUBLISH_DEFAULTS = { qos: 0, retain: false, payloadEncoding: 'plain', maxPacketBytes: 1024 * 1024 } as const;

/** emqx_mgmt_api_publish.erl, to_property/3: the REST body's properties as the message carries them (and pub_props shows them). */
export const PUBLISH_PROPERTIES: Readonly<Record<string, string>> = {
  payload_format_indicator: 'Payload-Format-Indicator',
  message_expiry_interval: 'Message-Expiry-Interval',
  response_topic: 'Response-Topic',
  correlation_data: 'Correlation-Data',
  user_properties: 'User-Property',
  content_type: 'Content-Type',
};

/** emqx_mgmt_api_clients.erl, format_channel_info/3: the fields of `GET /clients/{id}` the service reads (times as RFC 3339). */
export const CLIENT_INFO_FIELDS = ['clientid', 'username', 'connected', 'connected_at', 'disconnected_at', 'ip_address', 'port', 'proto_name', 'proto_ver', 'keepalive', 'clean_start', 'subscriptions_cnt', 'node'] as const;

// ---------------------------------------------------------------------------
// The HTTP action that carries rule outputs to the service

/** apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl and apps/emqx_resource (include/emqx_resource.hrl): defaults when emqx.conf does not say. */
export const HTTP_ACTION_DEFAULTS = { maxRetries: 2, requestTtlMs: 45_000, healthCheckIntervalMs: 15_000, inflightWindow: 100 } as const;

/** apps/emqx_resource/src/emqx_resource_buffer_worker.erl, default_resume_interval/2: the buffer's pause before it tries again. */
export function resumeIntervalMs(requestTtlMs: number, healthCheckIntervalMs: number): number {
  return Math.max(1, Math.min(healthCheckIntervalMs, Math.floor(requestTtlMs / 3)));
}

/** What becomes of an event after one attempt: an answer's status, or no answer at all. */
export type ActionOutcome = 'done' | 'retry' | 'drop';

/** emqx_bridge_http_connector.erl, transform_result/1 and maybe_retry/3: 2xx done; 429, 503, timeouts and lost or refused connections retried; any other status dropped. */
export function actionOutcome(answer: number | 'no_answer'): ActionOutcome {
  if (answer === 'no_answer') return 'retry';
  if (answer >= 200 && answer < 300) return 'done';
  return answer === 429 || answer === 503 ? 'retry' : 'drop';
}

/** apps/emqx_resource (async query mode, inflight window, per-request retries) and maybe_retry/3: events unordered, possibly twice, possibly before the REST publish that caused them answered. */
export const EVENT_DELIVERY = { ordered: false, mayRepeat: true, mayPrecedePublishAnswer: true } as const;

// ---------------------------------------------------------------------------
// Sessions

/** apps/emqx/src/emqx_schema.erl, the `mqtt` zone defaults, and apps/emqx/src/emqx_session_mem.erl. */
export const SESSION = {
  /** mqtt.session_expiry_interval: how long a clean_session=false (MQTT 3.1.1) session outlives its connection. */
  expiryIntervalS: 7200,
  /** mqtt.max_mqueue_len: messages an offline or busy session holds; emqx_mqueue.erl, in/2 drops the oldest when full. */
  maxQueueLength: 1000,
  /** mqtt.mqueue_store_qos0: QoS 0 messages are queued too. */
  queuesQos0: true,
  /** mqtt.max_inflight: what client.connected reports as receive_maximum for an MQTT 3.1.1 client (emqx_channel.erl, receive_maximum/2). */
  maxInflight: 32,
  /** mqtt.upgrade_qos = false: a delivery's QoS is the smaller of the message's and the subscription's. */
  upgradeQos: false,
  /** mqtt.max_clientid_len: client ids far longer than MQTT 3.1's 23 characters. */
  maxClientIdLength: 65535,
  /** mqtt.max_packet_size. */
  maxPacketBytes: 1024 * 1024,
} as const;

/** Why a session ends, as `client.disconnected` reports it. */
export const DISCONNECT_REASONS = {
  /** The client sent DISCONNECT (apps/emqx/src/emqx_channel.erl, handle_in(?DISCONNECT_PACKET)). */
  normal: 'normal',
  /** `DELETE /api/v5/clients/{id}` (emqx_channel.erl, handle_call(kick)). */
  kicked: 'kicked',
  /** A newcomer with clean start took the client id (emqx_channel.erl, handle_call(discard)). */
  discarded: 'discarded',
  /** A newcomer without clean start took the session over (emqx_channel.erl, handle_call({takeover, 'end'})). */
  takenover: 'takenover',
  /** No packet within 1.5 × keepalive (emqx_channel.erl, handle_timeout(keepalive)). */
  keepaliveTimeout: 'keepalive_timeout',
  /** The socket closed without DISCONNECT (apps/emqx/src/emqx_connection.erl, handle_msg({tcp_closed | ssl_closed, _})). */
  tcpClosed: 'tcp_closed',
  sslClosed: 'ssl_closed',
  /** The authn answer's expire_at passed (emqx_channel.erl, handle_timeout(connection_expire)). */
  notAuthorized: 'not_authorized',
} as const;

/** Reasons that end the session with the connection, whatever clean start said: the newcomer or the kick owns the client id now. */
export const SESSION_DISCARDING_REASONS: ReadonlySet<string> = new Set([DISCONNECT_REASONS.kicked, DISCONNECT_REASONS.discarded, DISCONNECT_REASONS.takenover]);

/** Reasons a session drops a message, as `message.dropped` and `delivery.dropped` report them. */
export const DROP_REASONS = {
  /** apps/emqx/src/emqx_broker.erl, publish/1: nobody subscribed (the REST publish answers 202). */
  noSubscribers: 'no_subscribers',
  /** emqx_session_mem.erl: the Message-Expiry-Interval passed before the message left the queue. */
  expired: 'expired',
  /** emqx_session_mem.erl, enqueue/3: the queue was full and this (the oldest) message made room. */
  queueFull: 'queue_full',
} as const;

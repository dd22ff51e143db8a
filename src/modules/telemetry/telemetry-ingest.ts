import type { RecordHeaders } from '../../infra/kafka.js';
import type { Clock } from '../../lib/clock.js';
import { isDeviceId } from '../../lib/identifiers.js';
import { telemetryTopic, telemetryTopicDevice } from '../../lib/mqtt-topics.js';
import { normalizeTelemetry, TELEMETRY_POINT_SCHEMA, type TelemetryLimits } from '../../lib/telemetry-normalizer.js';
import type { TopicNames } from '../../lib/topics.js';
import type { DeviceDirectory } from '../devices/device-directory.js';
import type { DeviceRecord } from '../devices/device-repository.js';
import { HANDLED, type EmqxEvent, type EventHandler, type EventOutcome, type UnusableEventSink } from '../../lib/emqx-event.js';
import type { MessageDedup } from './message-dedup.js';
import { OverloadedError, RecordTooLargeError, type OutgoingRecord, type ProduceBatcher, type SendOutcome } from './produce-batcher.js';
import type { TelemetryMetrics } from './telemetry-metrics.js';
import type { TopicProvisioner } from '../topics/topic-provisioner.js';

export const DEAD_LETTER_SCHEMA = 'telemetry_dead_letter/v1';

/** Reasons a message goes to a dead-letter topic (the `reason` field and metric label). */
export type DeadLetterReason =
  | 'invalid_event'
  | 'unknown_event'
  | 'event_too_large'
  | 'unknown_device'
  | 'username_mismatch'
  | 'topic_mismatch'
  | 'tenant_mismatch'
  | 'device_disabled'
  | 'invalid_base64'
  | 'record_too_large'
  | Exclude<ReturnType<typeof normalizeTelemetry>, { ok: true }>['reason'];

export interface DeadLetter {
  schema: typeof DEAD_LETTER_SCHEMA;
  reason: DeadLetterReason;
  detail: string;
  /** null when no tenant is known: the record is on telemetry.dlq.unattributed. */
  tenant_id: string | null;
  device_id: string | null;
  message_id: string | null;
  clientid: string | null;
  username: string | null;
  topic: string | null;
  received_at: string;
  dead_lettered_at: string;
  payload_encoding: 'plain' | 'base64';
  /** The payload bytes as the device sent them (after undoing the rule's base64), base64-encoded. */
  payload_base64: string | null;
  payload_bytes: number;
  /** True when only the first DEAD_LETTER_PAYLOAD_KEEP_BYTES are kept. */
  payload_truncated: boolean;
}

/** Original bytes kept in a dead letter: keeps the record well under Kafka's 1 MB message limit. */
export const DEAD_LETTER_PAYLOAD_KEEP_BYTES = 256 * 1024;

const MAX_IDENTIFIER_LENGTH = 256;

export interface TelemetryIngestOptions {
  devices: Pick<DeviceDirectory, 'get'>;
  dedup: MessageDedup;
  batcher: ProduceBatcher;
  provisioner: Pick<TopicProvisioner, 'ensureTenantOnce' | 'ensureUnattributedOnce'>;
  topics: TopicNames;
  limits: TelemetryLimits;
  clock: Clock;
  metrics: TelemetryMetrics;
  /** Told of every message once Kafka has it (liveness), before it is answered; must not throw. */
  onAccepted?: (device: DeviceRecord, receivedAtMs: number) => void;
}

/** A telemetry message read from the broker by the shared subscription. */
export interface SubscribedMessage {
  topic: string;
  payload: Buffer;
  /**
   * The message's id: the device's own (its `message_id` user property) when
   * it sets one, which repeats of the message carry too; else one the
   * subscriber assigned on arrival.
   */
  messageId: string;
  /** The id is the device's: a repeat of it within the dedup window is not produced again. */
  deviceMessageId: boolean;
  /** When it reached the service. */
  receivedAtMs: number;
}

export interface TelemetryIngest {
  /** The `message.publish` handler for `devices/{id}/telemetry`. */
  handle: EventHandler;
  /**
   * The same for a message from the shared subscription: the device is the
   * one its topic names (the broker's ACL lets a device publish only on its
   * own), the tenant the device's. `handled` is the moment to acknowledge it.
   */
  handleSubscribed(message: SubscribedMessage): Promise<EventOutcome>;
  /**
   * Keeps a request no event handler could take on a dead-letter topic: its
   * device's tenant's when the event names a known device, else the
   * unattributed one. The body is what the dead letter carries.
   */
  unusable: UnusableEventSink;
}

/** EMQX renders an undefined value in rule output as the string "undefined". */
function present(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && value !== 'undefined';
}

function identifier(value: unknown): string | null {
  return present(value) && value.length <= MAX_IDENTIFIER_LENGTH ? value : null;
}

/**
 * Strict base64 (Buffer.from skips characters it does not know, so it cannot
 * tell); written without a repeating group so a 10 MB payload cannot exhaust
 * the regular-expression backtracking stack.
 */
function isBase64(value: string): boolean {
  if (value.length % 4 !== 0) return false;
  const body = value.endsWith('==') ? value.slice(0, -2) : value.endsWith('=') ? value.slice(0, -1) : value;
  return !/[^A-Za-z0-9+/]/.test(body);
}

function millis(value: unknown): number | undefined {
  const ms = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 && ms < 8.64e15 ? ms : undefined;
}

interface Incoming {
  messageId: string | null;
  clientid: string | null;
  username: string | null;
  topic: string | null;
  encoding: 'plain' | 'base64';
  /** The payload as received in the event (before undoing base64). */
  raw: string | null;
  /** The payload bytes, when they came as bytes (the subscription) rather than in an event. */
  bytes: Buffer | null;
  /** The device is the one the topic names (the subscription), not the session's client id (the webhook). */
  byTopic: boolean;
  /** A repeat of the message id is to be kept out (false for an id the subscriber assigned). */
  dedup: boolean;
  receivedAtMs: number;
  claimedTenant: string | null;
}

function readEvent(event: EmqxEvent, clock: Clock): Incoming {
  const attrs = event.client_attrs;
  const claimedTenant =
    attrs !== null && typeof attrs === 'object' && present((attrs as Record<string, unknown>).tenant_id)
      ? String((attrs as Record<string, unknown>).tenant_id)
      : null;
  return {
    messageId: identifier(event.id),
    clientid: identifier(event.clientid),
    username: typeof event.username === 'string' ? event.username : null,
    topic: typeof event.topic === 'string' ? event.topic : null,
    encoding: event.payload_encoding === 'base64' ? 'base64' : 'plain',
    raw: typeof event.payload === 'string' ? event.payload : null,
    bytes: null,
    byTopic: false,
    dedup: true,
    receivedAtMs: millis(event.publish_received_at) ?? millis(event.timestamp) ?? clock(),
    claimedTenant,
  };
}

/**
 * Telemetry ingestion: identity from the session and the registry, the payload
 * normalized into a TelemetryPoint and produced to telemetry.raw.{tenant};
 * anything that can never become one goes to a dead-letter topic. The answer
 * is 2xx only once the broker acknowledged the record, and 503 (EMQX retries)
 * whenever it may succeed later — never 500, which EMQX would drop.
 */
export function createTelemetryIngest(options: TelemetryIngestOptions): TelemetryIngest {
  const { devices, dedup, batcher, provisioner, topics, limits, clock, metrics } = options;
  // A retry that arrives while the first delivery is still waiting for the
  // broker shares its outcome instead of producing a second copy.
  const inFlight = new Map<string, Promise<EventOutcome>>();

  const retry = (reason: string): EventOutcome => {
    metrics.retried.inc({ reason });
    return { kind: 'retry', reason };
  };

  const failure = (error: unknown): EventOutcome =>
    retry(error instanceof OverloadedError ? 'overloaded' : 'kafka_unavailable');

  /**
   * Produces a record once its topic exists, answering 2xx only after the
   * broker acknowledged it (or the screen found it already delivered), and
   * 503 when it may succeed later. `delivered` runs for a record produced
   * now; `tooLarge` answers for a record larger than one produce request
   * carries, which the broker would refuse every time. Its dedup mark is not awaited (EMQX repeats a message only after a
   * failed or lost answer): it rides with the next batch's lookup, or goes
   * alone within a few ms, so the lookup of a repeat (a later request, so a
   * later batch) already sees it.
   */
  async function produce(
    ensureTopic: () => Promise<void>,
    record: OutgoingRecord,
    delivered: () => void,
    tooLarge?: (detail: string) => Promise<EventOutcome>,
  ): Promise<EventOutcome> {
    let outcome: SendOutcome;
    try {
      await ensureTopic();
      outcome = await batcher.send(record);
    } catch (error) {
      if (tooLarge && error instanceof RecordTooLargeError) return tooLarge(`the TelemetryPoint is too large: ${error.message}`);
      return failure(error);
    }
    if (outcome === 'duplicate') {
      metrics.deduplicated.inc();
      return HANDLED;
    }
    delivered();
    if (record.dedupKey !== undefined) void dedup.remember(record.dedupKey);
    return HANDLED;
  }

  function originalBytes(incoming: Incoming): Buffer | null {
    if (incoming.bytes !== null) return incoming.bytes;
    if (incoming.raw === null) return null;
    return Buffer.from(incoming.raw, incoming.encoding === 'base64' ? 'base64' : 'utf8');
  }

  async function deadLetter(
    incoming: Incoming,
    device: DeviceRecord | null,
    reason: DeadLetterReason,
    detail: string,
    payload: Buffer | null,
    /** A whole request body kept in place of a payload: its full size, not deduplicated (EMQX does not retry a 2xx). */
    body?: { size: number },
  ): Promise<EventOutcome> {
    const tenantId = device?.tenantId ?? null;
    const kept = payload && payload.length > DEAD_LETTER_PAYLOAD_KEEP_BYTES ? payload.subarray(0, DEAD_LETTER_PAYLOAD_KEEP_BYTES) : payload;
    const record: DeadLetter = {
      schema: DEAD_LETTER_SCHEMA,
      reason,
      detail,
      tenant_id: tenantId,
      device_id: device?.id ?? null,
      message_id: incoming.messageId,
      clientid: incoming.clientid,
      username: incoming.username,
      topic: incoming.topic,
      received_at: new Date(incoming.receivedAtMs).toISOString(),
      dead_lettered_at: new Date(clock()).toISOString(),
      payload_encoding: body ? 'plain' : incoming.encoding,
      payload_base64: kept ? kept.toString('base64') : null,
      payload_bytes: body?.size ?? payload?.length ?? 0,
      payload_truncated: (body?.size ?? payload?.length ?? 0) > (kept?.length ?? 0),
    };
    const headers: RecordHeaders = { reason, 'content-type': 'application/json', schema: DEAD_LETTER_SCHEMA };
    if (tenantId) headers.tenant_id = tenantId;
    if (device) headers.device_id = device.id;
    // The dead letter must not be lost either: EMQX retries on 503.
    return produce(
      () => (tenantId ? provisioner.ensureTenantOnce(tenantId) : provisioner.ensureUnattributedOnce()),
      {
        topic: tenantId ? topics.telemetryDlq(tenantId) : topics.unattributedDlq,
        message: { key: device?.id ?? incoming.clientid, value: JSON.stringify(record), headers },
        dedupKey: !body && incoming.dedup && incoming.messageId && incoming.clientid ? dedup.keyOf(incoming.clientid, incoming.messageId) : undefined,
      },
      () => metrics.deadLettered.inc({ reason }),
    );
  }

  /** `messageId` and `clientid` are the incoming's own, known to be present. */
  async function ingest(incoming: Incoming, messageId: string, clientid: string): Promise<EventOutcome> {
    let device: DeviceRecord | null;
    try {
      // Device ids are UUIDs; anything else cannot be one (and would be a query error).
      device = isDeviceId(clientid) ? await devices.get(clientid) : null;
    } catch {
      return retry('registry_unavailable');
    }

    if (!device) return deadLetter(incoming, null, 'unknown_device', 'the client id is not a registered device', originalBytes(incoming));
    // From the subscription, the identity is the topic's (there is no session to cross-check).
    if (!incoming.byTopic && incoming.username !== clientid) {
      return deadLetter(incoming, device, 'username_mismatch', 'the username differs from the client id', originalBytes(incoming));
    }
    if (!incoming.byTopic && incoming.topic !== telemetryTopic(clientid)) {
      return deadLetter(incoming, device, 'topic_mismatch', 'the topic is not devices/{client id}/telemetry', originalBytes(incoming));
    }
    if (incoming.claimedTenant !== null && incoming.claimedTenant !== device.tenantId) {
      return deadLetter(incoming, device, 'tenant_mismatch', "the session's tenant differs from the device's tenant", originalBytes(incoming));
    }
    if (device.disabled) {
      // Messages EMQX still holds (it retries for up to 45 s) arrive after the
      // device was disabled and kicked; they are kept out of telemetry.raw but
      // not thrown away.
      return deadLetter(incoming, device, 'device_disabled', 'the device is disabled', originalBytes(incoming));
    }
    if (incoming.raw === null && incoming.bytes === null) {
      return deadLetter(incoming, device, 'invalid_event', 'the event has no string payload', null);
    }
    if (incoming.raw !== null && incoming.encoding === 'base64' && !isBase64(incoming.raw)) {
      return deadLetter(incoming, device, 'invalid_base64', 'payload_encoding is base64 but the payload is not base64', Buffer.from(incoming.raw, 'utf8'));
    }
    const payload = originalBytes(incoming) ?? Buffer.alloc(0);
    const result = normalizeTelemetry(
      {
        payload,
        tenantId: device.tenantId,
        deviceId: device.id,
        messageId,
        receivedAtMs: incoming.receivedAtMs,
        decoder: device.decoder,
      },
      limits,
    );
    if (!result.ok) return deadLetter(incoming, device, result.reason, result.detail, payload);
    const tenantId = device.tenantId;

    // Repeats are found by the batcher's screen, one lookup per batch. When
    // Redis cannot tell, the record is produced anyway: a possible duplicate
    // downstream is better than refusing telemetry, or losing it when EMQX gives up.
    return produce(
      () => provisioner.ensureTenantOnce(tenantId),
      {
        topic: topics.telemetryRaw(tenantId),
        message: {
          key: device.id,
          value: JSON.stringify(result.point),
          headers: { tenant_id: tenantId, device_id: device.id, 'content-type': 'application/json', schema: TELEMETRY_POINT_SCHEMA },
        },
        dedupKey: incoming.dedup ? dedup.keyOf(clientid, messageId) : undefined,
      },
      () => {
        metrics.accepted.inc();
        options.onAccepted?.(device, incoming.receivedAtMs);
      },
      (detail) => deadLetter(incoming, device, 'record_too_large', detail, payload),
    );
  }

  /** The device an event names, when it is one; null when unknown or not to be known now. */
  async function deviceNamedBy(incoming: Incoming): Promise<DeviceRecord | null> {
    if (incoming.clientid === null || !isDeviceId(incoming.clientid)) return null;
    try {
      return await devices.get(incoming.clientid);
    } catch {
      // Unattributed rather than lost: the registry being down must not hold a dead letter back.
      return null;
    }
  }

  return {
    async handle(event) {
      const incoming = readEvent(event, clock);
      const { messageId, clientid } = incoming;
      if (messageId === null || clientid === null) {
        return deadLetter(incoming, null, 'invalid_event', 'the event has no usable id or clientid', originalBytes(incoming));
      }
      const key = `${clientid}\n${messageId}`;
      const running = inFlight.get(key);
      if (running) return running;
      const outcome = ingest(incoming, messageId, clientid).finally(() => inFlight.delete(key));
      inFlight.set(key, outcome);
      return outcome;
    },
    async handleSubscribed(message) {
      const named = telemetryTopicDevice(message.topic);
      // The device the topic names stands where the webhook has the session's client id.
      const clientid = named !== null && isDeviceId(named) ? named : null;
      const incoming: Incoming = {
        messageId: message.messageId,
        clientid,
        username: null,
        topic: message.topic,
        encoding: 'plain',
        raw: null,
        bytes: message.payload,
        byTopic: true,
        dedup: message.deviceMessageId,
        receivedAtMs: message.receivedAtMs,
        claimedTenant: null,
      };
      if (clientid === null) {
        // Not a device's topic (a broker ACL that lets a client publish where no device may): kept, attributed to nobody.
        return deadLetter(incoming, null, 'unknown_device', 'the topic does not name a device: devices/{device id}/telemetry', message.payload);
      }
      return ingest(incoming, message.messageId, clientid);
    },
    async unusable({ reason, detail, body, size, event }) {
      const incoming = readEvent(event ?? { event: '' }, clock);
      return deadLetter(incoming, await deviceNamedBy(incoming), reason, detail, body, { size });
    },
  };
}

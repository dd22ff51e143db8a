import type { DeviceDirectory } from '../modules/devices/device-directory.js';
import { createMqttSubscription } from '../infra/mqtt-subscription.js';
import { sharedTelemetryFilter } from '../lib/mqtt-topics.js';
import type { DeviceRecord } from '../modules/devices/device-repository.js';
import { createSubscriptionIngest } from '../modules/telemetry/subscription-ingest.js';
import { createMessageDedup } from '../modules/telemetry/message-dedup.js';
import { createProduceBatcher } from '../modules/telemetry/produce-batcher.js';
import { createTelemetryIngest } from '../modules/telemetry/telemetry-ingest.js';
import { createTelemetryMetrics } from '../modules/telemetry/telemetry-metrics.js';
import type { WiringContext } from './context.js';
import type { Topics } from './topics.js';

/** How long start-up waits, in the background, for the broker to accept the subscription before it logs that it did not (the clients keep trying). */
const SUBSCRIPTION_START_WAIT_MS = 30_000;
/** At shutdown, how long messages under way get to reach Kafka and be acknowledged (the rest the broker delivers again). */
const SUBSCRIPTION_DRAIN_MS = 5000;

/**
 * Telemetry into Kafka: normalized TelemetryPoints on telemetry.raw.{tenant},
 * everything else on a dead-letter topic, repeats kept out by the message-id
 * window. From EMQX's rule engine (`/emqx/events`) always, and with
 * INGEST_MQTT_URL also read from the broker by an MQTT 5 shared subscription:
 * both go through the same ingest.
 */
export function wireIngest(
  deps: WiringContext & {
    directory: DeviceDirectory;
    topics: Topics;
    /** Told of every message Kafka acknowledged; must not throw. */
    onAccepted: (device: DeviceRecord, receivedAtMs: number) => void;
  },
) {
  const { config, infra, clock, directory, topics } = deps;
  const settings = config.ingest;
  const metrics = createTelemetryMetrics(deps.metrics);
  const dedup = createMessageDedup({
    redis: infra.redis.redis,
    keyPrefix: infra.redis.keyPrefix,
    windowS: settings.dedupWindowS,
    clock,
    onError: (error) => {
      metrics.dedupUnavailable.inc();
      infra.redis.state.down(error, { operation: 'dedup' });
    },
  });
  const batcher = createProduceBatcher({
    produce: (topicMessages, timeoutMs) => infra.kafka.produce(topicMessages, timeoutMs),
    lingerMs: settings.lingerMs,
    maxBatchSize: settings.batchMax,
    maxBatchBytes: config.kafka.maxBatchBytes,
    maxInFlightBatches: settings.maxInFlightBatches,
    maxPending: settings.maxPending,
    maxPendingBytes: settings.maxPendingBytes,
    timeoutMs: settings.produceTimeoutMs,
    screen: (keys) => dedup.delivered(keys),
    observer: metrics.observer,
  });
  const telemetry = createTelemetryIngest({
    devices: directory,
    topics: topics.names,
    clock,
    provisioner: topics.provisioner,
    limits: settings.limits,
    metrics,
    dedup,
    batcher,
    onAccepted: deps.onAccepted,
  });
  wireSubscription(deps, telemetry, metrics);
  return { handlers: { 'message.publish': telemetry.handle }, unusable: telemetry.unusable };
}

/** With INGEST_MQTT_URL, the shared-subscription reader: started once the app is ready, drained as it closes. */
function wireSubscription(
  deps: WiringContext,
  telemetry: ReturnType<typeof createTelemetryIngest>,
  metrics: ReturnType<typeof createTelemetryMetrics>,
): void {
  const settings = deps.config.ingest.subscription;
  if (!settings) return;
  const log = deps.log.child({ component: 'telemetry-subscription' });
  const ingest = createSubscriptionIngest({ telemetry, clock: deps.clock, metrics });
  const subscription = createMqttSubscription(
    {
      url: settings.url,
      username: settings.username,
      password: settings.password,
      ...(settings.ca !== undefined ? { ca: settings.ca } : {}),
      clientId: settings.clientId,
      clients: settings.clients,
      filter: sharedTelemetryFilter(settings.shareGroup),
      receiveMaximum: settings.receiveMaximum,
      sessionExpiryS: settings.sessionExpiryS,
      log,
    },
    { connected: (client, sessionPresent) => ingest.connected(client, sessionPresent), message: (publish, ack) => ingest.receive(publish, ack) },
  );
  // Connects in the background: a broker that is down at start-up must not keep the rest of the service down.
  deps.lifecycle.onReady(() => {
    subscription.start(SUBSCRIPTION_START_WAIT_MS).catch((error: unknown) => log.warn({ err: error }, 'telemetry subscription not started yet; retrying'));
  });
  // Leaves the group, lets what arrived reach Kafka and be acknowledged, and
  // ends the sessions when nothing was left; otherwise keeps them, so that
  // the broker delivers the rest again when this replica comes back.
  deps.lifecycle.preClose(async () => {
    await subscription.unsubscribe();
    const clean = await ingest.drain(SUBSCRIPTION_DRAIN_MS);
    await subscription.stop(clean);
  });
}

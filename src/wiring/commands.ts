import { createTopicConsumer } from '../infra/kafka-consumer.js';
import { createAuditRepository } from '../modules/audit/audit-repository.js';
import { createCommandDispatcher, DEFAULT_DISPATCHER_OPTIONS } from '../modules/commands/command-dispatcher.js';
import { createCommandEventHandlers } from '../modules/commands/command-events.js';
import { createCommandMetrics } from '../modules/commands/command-metrics.js';
import { createCommandRepository, type CommandChange } from '../modules/commands/command-repository.js';
import { createCommandRequestHandler } from '../modules/commands/command-requests.js';
import { createCommandService } from '../modules/commands/command-service.js';
import { createCommandStatusOutbox } from '../modules/commands/command-status-outbox.js';
import { createCommandWaiters } from '../modules/commands/command-waiters.js';
import { createCommandSweeper, DEFAULT_SWEEPER_OPTIONS } from '../modules/commands/command-sweeper.js';
import { createDeviceRepository } from '../modules/devices/device-repository.js';
import type { WiringContext } from './context.js';
import type { Topics } from './topics.js';

/** How often each replica lists Kafka's topics for request topics of tenants created elsewhere. */
const REQUEST_TOPICS_REFRESH_MS = 10_000;
const KAFKA_PRODUCE_TIMEOUT_MS = 5000;
/** How often a request waiting for its command (`?wait=`) reads it, for changes made on other replicas. */
const WAIT_POLL_MS = 250;

/**
 * Platform → device commands: the REST API and the Kafka requests that create
 * them (Postgres holds them), the dispatcher that publishes them through
 * EMQX's REST API, the rule events that track them, the sweeper that expires
 * them, and the outbox that puts every state change on commands.status.{tenant}.
 */
export function wireCommands(deps: WiringContext & { topics: Topics }) {
  const { config, infra, clock, log, topics, lifecycle } = deps;
  const settings = config.commands;
  const pool = infra.postgres.pool;
  const commands = createCommandRepository();
  const metrics = createCommandMetrics(deps.metrics, () => commands.depths(pool));

  const outbox = createCommandStatusOutbox({
    pool,
    commands,
    produce: infra.kafka.produce,
    topics: topics.names,
    ensureTenant: topics.provisioner.ensureTenantOnce,
    metrics,
    log,
    options: { intervalMs: settings.pollIntervalMs, batch: 500, produceTimeoutMs: KAFKA_PRODUCE_TIMEOUT_MS },
  });
  const waiters = createCommandWaiters({ db: pool, commands, pollMs: WAIT_POLL_MS });
  // Declared before the parts that report changes, and told of each after its commit.
  function changed(rows: readonly CommandChange[]) {
    for (const row of rows) metrics.entered(row.state);
    waiters.changed(rows);
    outbox.nudge();
    if (rows.some((row) => row.state === 'queued')) dispatcher.nudge();
  }

  const dispatcher = createCommandDispatcher({
    pool,
    commands,
    emqx: infra.emqx,
    clock,
    metrics,
    changed,
    log,
    // The lease outlives any publish: the REST call is bounded by EMQX_API_TIMEOUT_MS.
    options: {
      ...DEFAULT_DISPATCHER_OPTIONS,
      pollIntervalMs: settings.pollIntervalMs,
      leaseMs: Math.max(30_000, config.emqx.apiTimeoutMs * 3),
      replies: settings.replies,
    },
  });
  const sweeper = createCommandSweeper({
    pool,
    commands,
    clock,
    changed,
    log,
    options: { ...DEFAULT_SWEEPER_OPTIONS, intervalMs: settings.pollIntervalMs, retentionDays: settings.retentionDays },
  });
  const service = createCommandService({
    pool,
    commands,
    devices: createDeviceRepository(),
    audit: createAuditRepository(),
    clock,
    maxPendingPerDevice: settings.maxPendingPerDevice,
    // A publish under way is answered within EMQX_API_TIMEOUT_MS.
    cancelWaitMs: config.emqx.apiTimeoutMs + 1000,
    repliesEnabled: settings.replies,
    changed,
    waiters,
  });
  const events = createCommandEventHandlers({ pool, commands, clock, metrics, changed, subscribed: () => dispatcher.nudge() });
  const requests = settings.fromKafka
    ? createTopicConsumer({
        ...config.kafka,
        groupId: `${config.kafka.topicPrefix}device-link-mqtt.commands`,
        accepts: (topic) => topics.names.commandRequestsTenant(topic) !== null,
        handle: createCommandRequestHandler({
          service,
          topics: topics.names,
          produce: infra.kafka.produce,
          metrics,
          clock,
          produceTimeoutMs: KAFKA_PRODUCE_TIMEOUT_MS,
        }),
        refreshIntervalMs: REQUEST_TOPICS_REFRESH_MS,
        partitionsConsumedConcurrently: 4,
        log,
      })
    : null;

  lifecycle.onReady(() => {
    outbox.start();
    dispatcher.start();
    sweeper.start();
    requests?.start();
  });
  lifecycle.preClose(async () => {
    waiters.stop();
    await Promise.all([requests?.stop(), dispatcher.stop(), sweeper.stop()]);
    // Last: what the others changed while stopping is produced too.
    await outbox.stop();
  });

  return {
    service,
    /** Told of every committed state change of commands made elsewhere (command jobs). */
    changed,
    /** Handlers of `/emqx/events`: delivery tracking and lost sessions always, device replies when enabled. */
    handlers: { ...events.delivery, ...(settings.replies ? events.reply : {}) },
    /** A tenant was created here: consume its request topic now rather than at the next look. */
    tenantCreated: () => requests?.refresh(),
    /** Produces the status records waiting now (tests, and shutdown of a replica that wants none left behind). */
    drainStatus: () => outbox.drain(),
    sweep: () => sweeper.sweep(),
  };
}

export type Commands = ReturnType<typeof wireCommands>;

import { Counter, Gauge, type Registry } from 'prom-client';
import { COMMAND_STATES, isFinished, type CommandState } from '../../lib/command-states.js';
import type { CommandDepths } from './command-repository.js';

export interface CommandMetrics {
  /** State changes this replica committed (a command's creation counts as `queued`). */
  entered(state: CommandState): void;
  /** A publish through EMQX's REST API that did not hand the command over. */
  publishFailed(reason: string): void;
  /** A publish EMQX answered 202: nobody subscribed, the command waits for the device. */
  noSubscriber(): void;
  /** A tracking event (delivered, acked, dropped) and what came of it. */
  event(event: string, outcome: 'applied' | 'repeated' | 'unmatched' | 'ignored'): void;
  /** A device's reply and what came of it. */
  reply(outcome: 'applied' | 'late' | 'foreign' | 'unknown_command' | 'unexpected' | 'invalid'): void;
  /** A command request from Kafka that went to commands.dlq.{tenant}. */
  deadLettered(reason: string): void;
  statusProduceFailed(records: number): void;
}

/** The states a command can be in before it finishes (acked among them: it may wait for a reply). */
const UNFINISHED_STATES = COMMAND_STATES.filter((state) => !isFinished(state, true));

/**
 * Counters on the app's registry, and gauges read from Postgres when scraped:
 * unfinished commands by state, the queue depth, status records not yet on Kafka.
 */
export function createCommandMetrics(registry: Registry, depths: () => Promise<CommandDepths>): CommandMetrics {
  const transitions = new Counter({
    name: 'devicelink_commands_transitions_total',
    help: 'Commands that entered each state on this replica (creation counts as queued)',
    labelNames: ['state'] as const,
    registers: [registry],
  });
  const publishFailures = new Counter({
    name: 'devicelink_commands_publish_failures_total',
    help: 'Publishes through the EMQX REST API that did not hand a command over, by reason (no_answer, unreachable, status_503, refused, ...)',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const noSubscriber = new Counter({
    name: 'devicelink_commands_publish_no_subscriber_total',
    help: 'Publishes EMQX answered 202 (device not subscribed); the command waits for its subscription',
    registers: [registry],
  });
  const events = new Counter({
    name: 'devicelink_commands_events_total',
    help: 'Delivery events for command topics, by event and outcome (applied, repeated, unmatched, ignored)',
    labelNames: ['event', 'outcome'] as const,
    registers: [registry],
  });
  const replies = new Counter({
    name: 'devicelink_commands_replies_total',
    help: "Device replies by outcome (applied, late, foreign = naming another device's command, unknown_command, unexpected, invalid)",
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const deadLettered = new Counter({
    name: 'devicelink_commands_requests_dead_lettered_total',
    help: 'Command requests from Kafka sent to commands.dlq.{tenant}, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const statusFailures = new Counter({
    name: 'devicelink_commands_status_produce_failures_total',
    help: 'Status records whose produce to commands.status.{tenant} failed and will be retried',
    registers: [registry],
  });
  // The registry collects the gauges at once: they share one query. A scrape
  // while Postgres is down keeps the last values.
  let reading: Promise<CommandDepths | null> | undefined;
  const read = () =>
    (reading ??= depths()
      .catch(() => null)
      .finally(() => {
        reading = undefined;
      }));
  new Gauge({
    name: 'devicelink_commands_unfinished',
    help: 'Commands not finished, by state (acked: waiting for a reply), across all replicas',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const current = await read();
      if (!current) return;
      for (const state of UNFINISHED_STATES) this.set({ state }, current.unfinished[state] ?? 0);
    },
  });
  new Gauge({
    name: 'devicelink_commands_queue_depth',
    help: 'Commands queued (not yet handed to EMQX), across all replicas',
    registers: [registry],
    async collect() {
      const current = await read();
      if (current) this.set(current.unfinished.queued ?? 0);
    },
  });
  new Gauge({
    name: 'devicelink_commands_status_outbox_depth',
    help: 'State changes not yet produced to commands.status.{tenant}',
    registers: [registry],
    async collect() {
      const current = await read();
      if (current) this.set(current.outbox);
    },
  });
  return {
    entered: (state) => transitions.inc({ state }),
    publishFailed: (reason) => publishFailures.inc({ reason }),
    noSubscriber: () => noSubscriber.inc(),
    event: (event, outcome) => events.inc({ event, outcome }),
    reply: (outcome) => replies.inc({ outcome }),
    deadLettered: (reason) => deadLettered.inc({ reason }),
    statusProduceFailed: (records) => statusFailures.inc(records),
  };
}

import type { KafkaClient } from '../../infra/kafka.js';
import type { TopicNames } from '../../lib/topics.js';

export interface TopicProvisioner {
  /**
   * Creates the tenant's topics (telemetry, device events, commands: see
   * TopicNames.forTenant) that do not exist yet. Called when a tenant is
   * created; idempotent.
   */
  ensureTenant(tenantId: string): Promise<void>;
  /** The tenants' topics and the unattributed dead-letter topic, in one admin round trip. */
  reconcile(tenantIds: readonly string[]): Promise<void>;
  /** Like ensureTenant, but resolves at once for a tenant already ensured by this process. */
  ensureTenantOnce(tenantId: string): Promise<void>;
  ensureUnattributedOnce(): Promise<void>;
}

export interface TopicProvisionerOptions {
  kafka: Pick<KafkaClient, 'ensureTopics'>;
  topics: TopicNames;
  partitions: number;
  replicationFactor: number;
}

/**
 * Per-tenant topics. Redpanda (and our producer) does not auto-create topics,
 * so a tenant's topics exist before its first message: created with the
 * tenant, reconciled at start-up, and ensured once per process before the
 * first produce as a last line of defence.
 */
export function createTopicProvisioner(options: TopicProvisionerOptions): TopicProvisioner {
  const { kafka, topics } = options;
  const settings = { partitions: options.partitions, replicationFactor: options.replicationFactor };
  // Only successes are remembered: a failed attempt is retried by the next caller.
  const ensured = new Map<string, Promise<void>>();

  const once = (name: string, create: () => Promise<void>): Promise<void> => {
    let pending = ensured.get(name);
    if (!pending) {
      pending = create().catch((error: unknown) => {
        ensured.delete(name);
        throw error;
      });
      ensured.set(name, pending);
    }
    return pending;
  };

  const provisioner: TopicProvisioner = {
    async ensureTenant(tenantId) {
      await kafka.ensureTopics(topics.forTenant(tenantId), settings);
      ensured.set(tenantId, Promise.resolve());
    },
    async reconcile(tenantIds) {
      await kafka.ensureTopics([topics.unattributedDlq, ...tenantIds.flatMap((id) => topics.forTenant(id))], settings);
      ensured.set(topics.unattributedDlq, Promise.resolve());
      for (const id of tenantIds) ensured.set(id, Promise.resolve());
    },
    ensureTenantOnce: (tenantId) => once(tenantId, () => kafka.ensureTopics(topics.forTenant(tenantId), settings)),
    ensureUnattributedOnce: () => once(topics.unattributedDlq, () => kafka.ensureTopics([topics.unattributedDlq], settings)),
  };
  return provisioner;
}

export interface ReconciliationLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

export interface TopicReconciliationOptions {
  provisioner: Pick<TopicProvisioner, 'reconcile'>;
  listTenantIds(): Promise<string[]>;
  log: ReconciliationLogger;
  /** Delay before each retry; the last one repeats until it succeeds. */
  retryDelaysMs?: readonly number[];
}

export interface TopicReconciliation {
  /** Starts reconciling in the background; retries until it succeeds or stop() is called. */
  start(): void;
  /** Cancels retries and resolves once an attempt under way has settled (so clients can close after it). */
  stop(): Promise<void>;
  /** Resolves true once a reconciliation succeeded, false if stopped first. */
  readonly done: Promise<boolean>;
}

/**
 * Start-up reconciliation of every tenant's topics. It runs in the background
 * so that a Kafka outage at start-up does not keep the service (and its
 * authentication) down; ingestion ensures topics per tenant on its own.
 */
export function createTopicReconciliation(options: TopicReconciliationOptions): TopicReconciliation {
  const delays = options.retryDelaysMs ?? [500, 1000, 2000, 5000, 10_000];
  let stopped = false;
  let started = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let finish: (succeeded: boolean) => void = () => undefined;
  const done = new Promise<boolean>((resolve) => {
    finish = resolve;
  });

  async function attempt(number: number) {
    timer = undefined;
    if (stopped) return;
    try {
      const tenantIds = await options.listTenantIds();
      await options.provisioner.reconcile(tenantIds);
      options.log.info({ tenants: tenantIds.length }, 'kafka topics reconciled');
      finish(true);
    } catch (error) {
      if (stopped) return;
      const delayMs = delays[Math.min(number, delays.length - 1)] ?? 10_000;
      if (number === 0) {
        options.log.warn({ err: error instanceof Error ? error.message : String(error), retryInMs: delayMs }, 'kafka topic reconciliation failed; retrying');
      }
      timer = setTimeout(() => run(number + 1), delayMs);
      timer.unref();
    }
  }

  function run(number: number) {
    running = attempt(number).finally(() => {
      running = undefined;
    });
  }

  return {
    done,
    start() {
      if (started) return;
      started = true;
      run(0);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      // A hung broker could keep an attempt going for a while; closing the
      // Kafka client right after this ends it, so shutdown does not wait long.
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      finish(false);
    },
  };
}

import { createTopicNames } from '../lib/topics.js';
import { createTenantRepository } from '../modules/tenants/tenant-repository.js';
import { createTopicProvisioner, createTopicReconciliation } from '../modules/topics/topic-provisioner.js';
import type { WiringContext } from './context.js';

/** Kafka topic names, per-tenant topic creation, and the reconciliation of every tenant's topics at start-up. */
export function wireTopics({ config, infra, log, lifecycle }: WiringContext) {
  const names = createTopicNames(config.kafka.topicPrefix);
  const provisioner = createTopicProvisioner({
    kafka: infra.kafka,
    topics: names,
    partitions: config.kafka.topicPartitions,
    replicationFactor: config.kafka.topicReplicationFactor,
  });
  const tenants = createTenantRepository();
  const reconciliation = createTopicReconciliation({
    provisioner,
    listTenantIds: () => tenants.listIds(infra.postgres.pool),
    log,
  });
  // In the background: a Kafka outage at start-up must not keep authentication down.
  lifecycle.onReady(() => reconciliation.start());
  lifecycle.preClose(() => reconciliation.stop());
  return { names, provisioner };
}

export type Topics = ReturnType<typeof wireTopics>;

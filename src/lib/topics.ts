/**
 * Kafka topic names. Every name starts with the configured prefix (empty in
 * production; tests use one per file). Tenant ids are limited to
 * [a-z0-9_-], which Kafka accepts in topic names.
 */
export interface TopicNames {
  telemetryRaw(tenantId: string): string;
  telemetryDlq(tenantId: string): string;
  deviceEvents(tenantId: string): string;
  /** Dead letters whose tenant is unknown (unknown device, malformed identity). */
  readonly unattributedDlq: string;
  /** Every topic a tenant needs, created with the tenant and reconciled at start-up. */
  forTenant(tenantId: string): string[];
}

export function createTopicNames(prefix: string): TopicNames {
  const names: TopicNames = {
    telemetryRaw: (tenantId) => `${prefix}telemetry.raw.${tenantId}`,
    telemetryDlq: (tenantId) => `${prefix}telemetry.dlq.${tenantId}`,
    deviceEvents: (tenantId) => `${prefix}device.events.${tenantId}`,
    unattributedDlq: `${prefix}telemetry.dlq.unattributed`,
    forTenant: (tenantId) => [names.telemetryRaw(tenantId), names.telemetryDlq(tenantId), names.deviceEvents(tenantId)],
  };
  return names;
}

import { TENANT_ID_PATTERN } from './identifiers.js';

/**
 * Kafka topic names. Every name starts with the configured prefix (empty in
 * production; tests use one per file). Tenant ids are limited to
 * [a-z0-9_-], which Kafka accepts in topic names and which holds no ".", so
 * `commands.status.{tenant}` and `commands.dlq.{tenant}` can never be read as
 * the request topic `commands.{tenant}` of some tenant.
 */
export interface TopicNames {
  telemetryRaw(tenantId: string): string;
  telemetryDlq(tenantId: string): string;
  deviceEvents(tenantId: string): string;
  /** Command requests from other services (consumed). */
  commandRequests(tenantId: string): string;
  /** One record per command state change (produced). */
  commandStatus(tenantId: string): string;
  /** Command requests that could not be taken, with the reason. */
  commandDlq(tenantId: string): string;
  /** The tenant whose command request topic this is, or null for any other topic. */
  commandRequestsTenant(topic: string): string | null;
  /** Dead letters whose tenant is unknown (unknown device, malformed identity). */
  readonly unattributedDlq: string;
  /** Every topic a tenant needs, created with the tenant and reconciled at start-up. */
  forTenant(tenantId: string): string[];
}

export function createTopicNames(prefix: string): TopicNames {
  const requests = `${prefix}commands.`;
  const names: TopicNames = {
    telemetryRaw: (tenantId) => `${prefix}telemetry.raw.${tenantId}`,
    telemetryDlq: (tenantId) => `${prefix}telemetry.dlq.${tenantId}`,
    deviceEvents: (tenantId) => `${prefix}device.events.${tenantId}`,
    commandRequests: (tenantId) => `${requests}${tenantId}`,
    commandStatus: (tenantId) => `${prefix}commands.status.${tenantId}`,
    commandDlq: (tenantId) => `${prefix}commands.dlq.${tenantId}`,
    commandRequestsTenant(topic) {
      if (!topic.startsWith(requests)) return null;
      const tenantId = topic.slice(requests.length);
      return TENANT_ID_PATTERN.test(tenantId) ? tenantId : null;
    },
    unattributedDlq: `${prefix}telemetry.dlq.unattributed`,
    forTenant: (tenantId) => [
      names.telemetryRaw(tenantId),
      names.telemetryDlq(tenantId),
      names.deviceEvents(tenantId),
      names.commandRequests(tenantId),
      names.commandStatus(tenantId),
      names.commandDlq(tenantId),
    ],
  };
  return names;
}

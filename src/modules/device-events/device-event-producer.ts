import type { KafkaClient } from '../../infra/kafka.js';
import type { TopicNames } from '../../lib/topics.js';

export type DeviceEventType = 'online' | 'offline' | 'connected' | 'disconnected';

/** One record of `device.events.{tenant_id}` (key = device_id). */
export interface DeviceEvent {
  readonly type: DeviceEventType;
  readonly tenant_id: string;
  readonly device_id: string;
  /** ISO-8601 time at which the transition happened. */
  readonly at: string;
  /** Disconnect reason as EMQX reports it (disconnected events only). */
  readonly reason?: string;
}

export interface DeviceEventProducer {
  /**
   * Produces the events (acks=all), one topic per tenant. Resolves once every
   * record is acknowledged; rejects with a DeviceEventProduceError naming the
   * tenants whose records were not.
   */
  produce(events: readonly DeviceEvent[]): Promise<void>;
}

export class DeviceEventProduceError extends Error {
  constructor(
    readonly failedTenants: ReadonlySet<string>,
    cause: unknown,
  ) {
    super(`device events not acknowledged for tenants ${[...failedTenants].join(', ')}`, { cause });
    this.name = 'DeviceEventProduceError';
  }
}

export interface DeviceEventProducerDeps {
  produce: KafkaClient['produce'];
  topics: Pick<TopicNames, 'deviceEvents'>;
  timeoutMs?: number;
}

export function createDeviceEventProducer({ produce, topics, timeoutMs = 5000 }: DeviceEventProducerDeps): DeviceEventProducer {
  return {
    async produce(events) {
      if (events.length === 0) return;
      const byTenant = new Map<string, DeviceEvent[]>();
      for (const event of events) {
        const list = byTenant.get(event.tenant_id);
        if (list) list.push(event);
        else byTenant.set(event.tenant_id, [event]);
      }
      // One send per tenant: a tenant whose topic is gone must not hold back the others.
      const tenants = [...byTenant.keys()];
      const results = await Promise.allSettled(
        tenants.map((tenantId) =>
          produce(
            [
              {
                topic: topics.deviceEvents(tenantId),
                messages: (byTenant.get(tenantId) ?? []).map((event) => ({ key: event.device_id, value: JSON.stringify(event) })),
              },
            ],
            timeoutMs,
          ),
        ),
      );
      const failed = new Set<string>();
      let cause: unknown;
      results.forEach((result, index) => {
        const tenantId = tenants[index];
        if (result.status === 'rejected' && tenantId !== undefined) {
          failed.add(tenantId);
          cause ??= result.reason;
        }
      });
      if (failed.size > 0) throw new DeviceEventProduceError(failed, cause);
    },
  };
}

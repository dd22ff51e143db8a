import { createTopicNames } from '../lib/topics.js';
import { createDeviceEventProducer } from '../modules/device-events/device-event-producer.js';
import type { DeviceDirectory } from '../modules/devices/device-directory.js';
import { createSessionEventHandlers } from '../modules/sessions/session-events.js';
import { createSessionStore } from '../modules/sessions/session-store.js';
import type { WiringContext } from './context.js';

/** MQTT sessions as EMQX's connect/disconnect events describe them, in Redis; each becomes a device event. */
export function wireSessions(deps: WiringContext & { directory: DeviceDirectory }) {
  const { config, infra, log } = deps;
  const store = createSessionStore({ redis: infra.redis.redis, keyPrefix: infra.redis.keyPrefix });
  const deviceEvents = createDeviceEventProducer({ produce: infra.kafka.produce, topics: createTopicNames(config.kafka.topicPrefix) });
  return {
    store,
    handlers: createSessionEventHandlers({ sessions: store, devices: deps.directory, deviceEvents, log }),
  };
}

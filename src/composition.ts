import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from './config.js';
import { createCredentialChangeBus } from './infra/credential-changes.js';
import type { Infra } from './infra/index.js';
import type { Clock } from './lib/clock.js';
import { createTopicNames } from './lib/topics.js';
import { createDeviceDirectory } from './modules/devices/device-directory.js';
import type { EventHandler } from './modules/emqx-events/events-routes.js';

export interface CompositionInput {
  config: Config;
  infra: Infra;
  clock: Clock;
  metrics: Registry;
  log: FastifyBaseLogger;
}

/** The one place where services are created and handed their dependencies. */
export function createServices({ config, infra, clock, log }: CompositionInput) {
  const topics = createTopicNames(config.kafka.topicPrefix);
  const changes = createCredentialChangeBus(infra.redis, log);
  const devices = createDeviceDirectory({ pool: infra.postgres.pool, changes, clock });
  const eventHandlers: Record<string, EventHandler> = {};
  return { topics, changes, devices, eventHandlers };
}

export type Services = ReturnType<typeof createServices>;

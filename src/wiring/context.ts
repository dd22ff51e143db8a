import type { FastifyBaseLogger } from 'fastify';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Infra } from '../infra/index.js';
import type { Clock } from '../lib/clock.js';
import type { LifecycleRegistrar } from './lifecycle.js';

/** What every feature's wiring is given: the configuration, the clients and the shared plumbing. */
export interface WiringContext {
  readonly config: Config;
  readonly infra: Infra;
  readonly clock: Clock;
  /** The app's metrics registry (not prom-client's global one). */
  readonly metrics: Registry;
  readonly log: FastifyBaseLogger;
  /** Where the feature registers its background work's start and stop, and what it writes at close. */
  readonly lifecycle: LifecycleRegistrar;
}

import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { buildApp, type AppDeps } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import { closeInfra, createInfra, type Infra } from '../../src/infra/index.js';
import { systemClock, type Clock } from '../../src/lib/clock.js';
import type { DeviceDirectory } from '../../src/modules/devices/device-directory.js';
import type { WiringContext } from '../../src/wiring/context.js';
import { wireDirectory } from '../../src/wiring/directory.js';
import { createLifecycle, type Lifecycle } from '../../src/wiring/lifecycle.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { testConfig, uniqueTag } from './env.js';
import { connectRedis, deleteKeysUnder } from './redis.js';

/** A logger that drops everything: tests assert on behaviour, not on log lines. */
export const silentLog = {
  level: 'silent',
  fatal: () => undefined,
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  trace: () => undefined,
  silent: () => undefined,
  child: () => silentLog,
} as unknown as WiringContext['log'];

export interface TestContext {
  readonly tag: string;
  readonly db: TestDatabase;
  readonly config: Config;
  /** Builds an app on this context's database, Redis prefix and topic prefix; closed by close(). */
  app(deps?: AppDeps, overrides?: Record<string, string>): Promise<FastifyInstance>;
  /** Clients for this context's stores, as the app creates them; closed by close(). */
  infra(overrides?: Record<string, string>): Infra;
  /**
   * What a feature's wiring function takes (see src/wiring/), on this
   * context's stores, plus the shared device directory: a test drives a
   * feature wired exactly as the app wires it. The background work the
   * feature registers runs only when the test runs a phase of `lifecycle`.
   */
  wiring(options?: { clock?: Clock }): WiringContext & { directory: DeviceDirectory; lifecycle: Lifecycle };
  close(): Promise<void>;
}

/**
 * Everything one test file needs, isolated from other files running at the same
 * time: its own database, Redis key prefix and Kafka topic prefix.
 */
export async function createTestContext(overrides: Record<string, string> = {}): Promise<TestContext> {
  const tag = uniqueTag();
  const db = await createTestDatabase(tag);
  const config = testConfig(tag, db.url, overrides);
  const configWith = (more: Record<string, string>) => (Object.keys(more).length ? testConfig(tag, db.url, { ...overrides, ...more }) : config);
  const apps: FastifyInstance[] = [];
  const clients: Infra[] = [];
  const infra = (more: Record<string, string> = {}) => {
    const created = createInfra(configWith(more), silentLog);
    clients.push(created);
    return created;
  };
  return {
    tag,
    db,
    config,
    async app(deps = {}, appOverrides = {}) {
      const app = await buildApp(configWith(appOverrides), deps);
      apps.push(app);
      await app.ready();
      return app;
    },
    infra,
    wiring({ clock = systemClock } = {}) {
      const lifecycle = createLifecycle(silentLog);
      const context: WiringContext = { config, infra: infra(), clock, metrics: new Registry(), log: silentLog, lifecycle };
      return { ...context, lifecycle, directory: wireDirectory(context) };
    },
    async close() {
      await Promise.allSettled(apps.map((app) => app.close()));
      await Promise.allSettled(clients.map(closeInfra));
      // The Redis the apps used: the shared one, or one the test pointed them at.
      const redis = connectRedis(config.redis);
      try {
        await deleteKeysUnder(redis.redis, config.redis.keyPrefix);
      } finally {
        await redis.close();
      }
      await db.drop();
    },
  };
}

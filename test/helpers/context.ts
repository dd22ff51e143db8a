import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { buildApp, type AppDeps } from '../../src/app.js';
import type { Config } from '../../src/config.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { TEST_REDIS_URL, testConfig, uniqueTag } from './env.js';

export interface TestContext {
  readonly tag: string;
  readonly db: TestDatabase;
  readonly config: Config;
  /** Builds an app on this context's database, Redis prefix and topic prefix; closed by close(). */
  app(deps?: AppDeps, overrides?: Record<string, string>): Promise<FastifyInstance>;
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
  const apps: FastifyInstance[] = [];
  return {
    tag,
    db,
    config,
    async app(deps = {}, appOverrides = {}) {
      const appConfig = Object.keys(appOverrides).length ? testConfig(tag, db.url, { ...overrides, ...appOverrides }) : config;
      const app = await buildApp(appConfig, deps);
      apps.push(app);
      await app.ready();
      return app;
    },
    async close() {
      await Promise.allSettled(apps.map((app) => app.close()));
      await deleteRedisPrefix(config.redis.keyPrefix);
      await db.drop();
    },
  };
}

async function deleteRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

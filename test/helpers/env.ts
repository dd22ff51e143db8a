import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../../src/config.js';

export const TEST_POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
export const TEST_KAFKA_BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:19092';

export const TEST_ADMIN_TOKEN = 'test-root-admin-token-0123456789';
export const TEST_HOOK_TOKEN = 'test-emqx-hook-token-0123456789';
/** KEY_DIGEST_SECRET of test apps: seeders digest keys under it as the registry would. */
export const TEST_KEY_DIGEST_SECRET = 'test-key-digest-secret-0123456789abcdef';

/** A short unique tag for names (database, Redis prefix, topic prefix). */
export function uniqueTag(): string {
  return `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** The environment a test app runs with; every name is unique to the caller. */
export function testEnv(tag: string, databaseUrl: string, overrides: Record<string, string> = {}) {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_MAX: '5',
    MIGRATE_ON_START: 'false',
    REDIS_URL: TEST_REDIS_URL,
    REDIS_KEY_PREFIX: `t:${tag}:`,
    KAFKA_BROKERS: TEST_KAFKA_BROKERS,
    KAFKA_CLIENT_ID: `dlm-test-${tag}`,
    KAFKA_TOPIC_PREFIX: `t-${tag}.`,
    KAFKA_TOPIC_PARTITIONS: '2',
    KAFKA_TOPIC_REPLICATION_FACTOR: '1',
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    EMQX_HOOK_TOKEN: TEST_HOOK_TOKEN,
    EMQX_API_URL: 'http://127.0.0.1:1',
    EMQX_API_KEY: 'test-key',
    EMQX_API_SECRET: 'test-secret',
    // Cheap hashing keeps tests fast; the production default is measured in docs/authentication.md.
    ARGON2_MEMORY_KIB: '8192',
    ARGON2_TIME_COST: '1',
    ARGON2_PARALLELISM: '1',
    CREDENTIAL_CACHE_SECRET: `cache-secret-${tag}-0123456789`,
    KEY_DIGEST_SECRET: TEST_KEY_DIGEST_SECRET,
    // Joining the command-request consumer group costs an app seconds at start
    // and at close; the tests of that consumer turn it on.
    COMMANDS_FROM_KAFKA: 'false',
    ...overrides,
  };
}

export function testConfig(tag: string, databaseUrl: string, overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(tag, databaseUrl, overrides));
}

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadConfig, type Config } from '../../src/config.js';
import { kafkaJsSecurity } from '../../src/infra/kafka.js';

export const TEST_POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';

/**
 * How the tests reach the shared Redis, as the service's REDIS_* variables:
 * one node at TEST_REDIS_URL; or a Redis Cluster (TEST_REDIS_CLUSTER_NODES,
 * `scripts/redis-cluster.sh`); or a primary behind Sentinel
 * (TEST_REDIS_SENTINELS and TEST_REDIS_SENTINEL_MASTER, with
 * TEST_REDIS_SENTINEL_PASSWORD, `scripts/redis-sentinel.sh`); logging in with
 * TEST_REDIS_PASSWORD when set.
 */
export const TEST_REDIS_ENV: Readonly<Record<string, string>> = (() => {
  const env = process.env;
  const settings: Record<string, string> = {};
  if (env.TEST_REDIS_CLUSTER_NODES) settings.REDIS_CLUSTER_NODES = env.TEST_REDIS_CLUSTER_NODES;
  else if (env.TEST_REDIS_SENTINELS) {
    settings.REDIS_SENTINELS = env.TEST_REDIS_SENTINELS;
    settings.REDIS_SENTINEL_MASTER = env.TEST_REDIS_SENTINEL_MASTER ?? 'dlm';
    if (env.TEST_REDIS_SENTINEL_PASSWORD) settings.REDIS_SENTINEL_PASSWORD = env.TEST_REDIS_SENTINEL_PASSWORD;
  } else settings.REDIS_URL = TEST_REDIS_URL;
  if (env.TEST_REDIS_PASSWORD) settings.REDIS_PASSWORD = env.TEST_REDIS_PASSWORD;
  return settings;
})();

/** The variables that choose a Redis: an app given one of them is pointed at a Redis of the test's own. */
const REDIS_TOPOLOGY_VARIABLES = ['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'];
export const TEST_KAFKA_BROKERS = process.env.TEST_KAFKA_BROKERS ?? '127.0.0.1:19092';

/** The settings a client of a secured shared broker sets. */
const KAFKA_SECURITY_VARIABLES = ['KAFKA_SASL_MECHANISM', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD', 'KAFKA_TLS', 'KAFKA_TLS_CA_FILE'];

/**
 * How the shared test broker is reached when it is secured: TEST_KAFKA_CLIENT_ENV
 * names the file of KAFKA_* settings `KAFKA_SECURITY=sasl_ssl scripts/kafka.sh
 * start` writes. Empty for a plaintext broker.
 */
export const TEST_KAFKA_SECURITY: Readonly<Record<string, string>> = (() => {
  const file = process.env.TEST_KAFKA_CLIENT_ENV;
  if (!file) return {};
  const settings: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (match?.[1] && KAFKA_SECURITY_VARIABLES.includes(match[1])) settings[match[1]] = match[2] ?? '';
  }
  return settings;
})();

/** kafkajs's security settings for a broker list: the shared broker's when it is that one, none for a test's own plaintext broker. */
export function testKafkaSecurity(brokers: string) {
  if (brokers !== TEST_KAFKA_BROKERS || Object.keys(TEST_KAFKA_SECURITY).length === 0) return {};
  const s = TEST_KAFKA_SECURITY;
  const mechanism = s.KAFKA_SASL_MECHANISM as 'plain' | 'scram-sha-256' | 'scram-sha-512' | undefined;
  return kafkaJsSecurity({
    sasl: mechanism && s.KAFKA_SASL_USERNAME && s.KAFKA_SASL_PASSWORD ? { mechanism, username: s.KAFKA_SASL_USERNAME, password: s.KAFKA_SASL_PASSWORD } : null,
    tls: s.KAFKA_TLS === 'true' ? (s.KAFKA_TLS_CA_FILE ? { ca: readFileSync(s.KAFKA_TLS_CA_FILE, 'utf8') } : {}) : null,
  });
}

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
    // The shared broker's security, unless the test points the app at a broker of its own.
    ...(overrides.KAFKA_BROKERS === undefined || overrides.KAFKA_BROKERS === TEST_KAFKA_BROKERS ? TEST_KAFKA_SECURITY : {}),
    // The shared Redis, unless the test points the app at a Redis of its own.
    ...(REDIS_TOPOLOGY_VARIABLES.some((name) => overrides[name] !== undefined) ? {} : TEST_REDIS_ENV),
    ...overrides,
  };
}

export function testConfig(tag: string, databaseUrl: string, overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(tag, databaseUrl, overrides));
}

import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { z } from 'zod';
import type { RedisAddress, RedisTopology } from './infra/redis.js';
import { isDeviceId } from './lib/identifiers.js';

/**
 * Variables that hold secrets. Each may instead be given as `NAME_FILE`, the
 * path of a file holding the value (Docker/Kubernetes secrets). None has a default.
 */
export const SECRET_VARIABLES = [
  'DATABASE_URL',
  'REDIS_URL',
  'REDIS_PASSWORD',
  'REDIS_SENTINEL_PASSWORD',
  'ADMIN_TOKEN',
  'EMQX_HOOK_TOKEN',
  'EMQX_HOOK_TOKEN_PREVIOUS',
  'EMQX_API_KEY',
  'EMQX_API_SECRET',
  'CREDENTIAL_CACHE_SECRET',
  'KEY_DIGEST_SECRET',
  'KEY_DIGEST_SECRET_PREVIOUS',
  'KAFKA_SASL_PASSWORD',
  'INGEST_MQTT_PASSWORD',
] as const;

/** Variables that name files the service reads at start-up (TLS material); a file that cannot be read is named with its variable. */
const KAFKA_FILE_VARIABLES = ['KAFKA_TLS_CA_FILE', 'KAFKA_TLS_CERT_FILE', 'KAFKA_TLS_KEY_FILE'] as const;
const FILE_VARIABLES = [...KAFKA_FILE_VARIABLES, 'REDIS_TLS_CA_FILE', 'INGEST_MQTT_CA_FILE'] as const;
type FileVariable = (typeof FILE_VARIABLES)[number];

/**
 * What the published example values of secrets (docs, earlier compose
 * files) contain. Such a value is public, so a service holding one is open to
 * anyone who read the examples; it is refused at start-up.
 */
const EXAMPLE_SECRET_MARK = /change-me/i;

/** Room for an event's fields around its payload (ids, topic, client attributes, properties). */
const EVENT_ENVELOPE_BYTES = 64 * 1024;

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const token = z.string().min(16, 'must be at least 16 characters');

const url = (protocols: readonly string[]) =>
  z.string().refine((value) => {
    try {
      return protocols.includes(new URL(value).protocol);
    } catch {
      return false;
    }
  }, `must be a URL (${protocols.join(' or ')})`);

const addressList = z
  .string()
  .transform((value) => value.split(',').map((address) => address.trim()).filter(Boolean))
  .refine(
    (addresses) => addresses.length > 0 && addresses.every((address) => /^[^\s:]+:\d{1,5}$/.test(address)),
    'must be a comma-separated list of host:port',
  );

const envSchema = z.object({
  PORT: int(0, 65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  METRICS_PORT: int(0, 65535).optional(),
  METRICS_HOST: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SHUTDOWN_TIMEOUT_MS: int(1000, 120_000).default(20_000),
  SHUTDOWN_DRAIN_DELAY_MS: int(0, 60_000).default(0),
  HTTP_CONNECTION_MAX_REQUESTS: int(0, 100_000_000).default(0),
  HTTP_CONNECTION_MAX_AGE_MS: int(0, 86_400_000).default(300_000),

  DATABASE_URL: url(['postgres:', 'postgresql:']),
  DATABASE_POOL_MAX: int(1, 200).default(10),
  MIGRATE_ON_START: bool.default(true),

  // One of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS (crossChecks).
  REDIS_URL: url(['redis:', 'rediss:']).optional(),
  REDIS_CLUSTER_NODES: addressList.optional(),
  REDIS_SENTINELS: addressList.optional(),
  REDIS_SENTINEL_MASTER: z.string().min(1).optional(),
  REDIS_SENTINEL_PASSWORD: z.string().min(1).optional(),
  REDIS_USERNAME: z.string().min(1).optional(),
  REDIS_PASSWORD: z.string().min(1).optional(),
  REDIS_TLS: bool.optional(),
  REDIS_TLS_CA_FILE: z.string().min(1).optional(),
  REDIS_KEY_PREFIX: z.string().max(64).default('dlm:'),

  KAFKA_BROKERS: addressList,
  KAFKA_CLIENT_ID: z.string().min(1).max(255).default('device-link-mqtt'),
  KAFKA_TOPIC_PREFIX: z
    .string()
    .max(64)
    .regex(/^[A-Za-z0-9._-]*$/, 'may hold only letters, digits, ".", "_" and "-"')
    .default(''),
  KAFKA_TOPIC_PARTITIONS: int(1, 1024).default(6),
  KAFKA_TOPIC_REPLICATION_FACTOR: int(1, 16).default(1),
  KAFKA_PRODUCERS: int(1, 16).default(4),
  // Below the broker's message size limit (1 MiB by default in Kafka and
  // Redpanda); at least room for the largest dead letter (256 KiB kept, in base64).
  KAFKA_MAX_BATCH_BYTES: int(512 * 1024, 64 * 1024 * 1024).default(900 * 1024),
  KAFKA_SASL_MECHANISM: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  KAFKA_SASL_USERNAME: z.string().min(1).optional(),
  KAFKA_SASL_PASSWORD: z.string().min(1).optional(),
  KAFKA_TLS: bool.default(false),
  KAFKA_TLS_CA_FILE: z.string().min(1).optional(),
  KAFKA_TLS_CERT_FILE: z.string().min(1).optional(),
  KAFKA_TLS_KEY_FILE: z.string().min(1).optional(),

  ADMIN_TOKEN: token,

  EMQX_HOOK_TOKEN: token,
  EMQX_HOOK_TOKEN_PREVIOUS: token.optional(),
  EMQX_API_URL: url(['http:', 'https:']),
  EMQX_API_KEY: z.string().min(1),
  EMQX_API_SECRET: z.string().min(1),
  EMQX_API_TIMEOUT_MS: int(100, 30_000).default(2000),

  ARGON2_MEMORY_KIB: int(8 * 1024, 1024 * 1024).default(19 * 1024),
  ARGON2_TIME_COST: int(1, 10).default(2),
  ARGON2_PARALLELISM: int(1, 16).default(1),
  CREDENTIAL_CACHE_SECRET: token,
  KEY_DIGEST_SECRET: z.string().min(32, 'must be at least 32 characters'),
  KEY_DIGEST_SECRET_PREVIOUS: z.string().min(32, 'must be at least 32 characters').optional(),
  CREDENTIAL_CACHE_TTL_S: int(5, 86_400).default(300),
  ARGON2_CONCURRENCY: int(0, 64).default(0),
  ARGON2_MAX_WAIT_MS: int(50, 4000).default(800),
  DUPLICATE_CLIENT_POLICY: z.enum(['reject', 'takeover']).default('reject'),

  // At most 4 s: with the deadline's write slack (≤ 1 s) offline stays within 5 s.
  LIVENESS_SWEEP_INTERVAL_MS: int(100, 4000).default(1000),
  // Far below the smallest offline threshold (10 s): deadlines are taken from the messages' own times.
  LIVENESS_FLUSH_INTERVAL_MS: int(0, 1000).default(250),

  INGEST_MAX_PAYLOAD_BYTES: int(1024, 4 * 1024 * 1024).default(256 * 1024),
  INGEST_MAX_FIELDS: int(1, 100_000).default(1000),
  INGEST_MAX_KEY_LENGTH: int(8, 1024).default(128),
  INGEST_MAX_STRING_BYTES: int(16, 64 * 1024).default(4096),
  INGEST_MAX_DEPTH: int(1, 32).default(8),
  INGEST_TIMESTAMP_MAX_AGE_S: int(60, 10 * 365 * 86_400).default(365 * 86_400),
  INGEST_TIMESTAMP_MAX_AHEAD_S: int(0, 86_400).default(300),
  INGEST_DEDUP_WINDOW_S: int(60, 7 * 86_400).default(900),
  INGEST_LINGER_MS: int(0, 100).default(1),
  INGEST_BATCH_MAX: int(1, 10_000).default(500),
  INGEST_MAX_IN_FLIGHT_BATCHES: int(1, 64).default(1),
  INGEST_MAX_PENDING: int(1, 1_000_000).default(20_000),
  INGEST_MAX_PENDING_BYTES: int(1024 * 1024, 4 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
  INGEST_PRODUCE_TIMEOUT_MS: int(100, 30_000).default(5000),
  // Ingest by MQTT 5 shared subscription, as well as (or instead of) the webhook's telemetry rule.
  INGEST_MQTT_URL: url(['mqtt:', 'mqtts:']).optional(),
  INGEST_MQTT_USERNAME: z.string().min(1).max(256).optional(),
  INGEST_MQTT_PASSWORD: z.string().min(16, 'must be at least 16 characters').optional(),
  INGEST_MQTT_CA_FILE: z.string().min(1).optional(),
  INGEST_MQTT_SHARE_GROUP: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'may hold only letters, digits, ".", "_" and "-" (at most 64)')
    .default('device-link'),
  INGEST_MQTT_CLIENT_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,48}$/, 'may hold only letters, digits, ".", "_" and "-" (at most 48)')
    .optional(),
  INGEST_MQTT_CLIENTS: int(1, 64).default(2),
  INGEST_MQTT_RECEIVE_MAXIMUM: int(1, 65_535).default(1000),
  INGEST_MQTT_SESSION_EXPIRY_S: int(0, 7 * 86_400).default(300),

  COMMANDS_MAX_PENDING_PER_DEVICE: int(1, 1000).default(50),
  COMMANDS_RETENTION_DAYS: int(1, 3650).default(30),
  COMMANDS_POLL_INTERVAL_MS: int(50, 10_000).default(1000),
  COMMANDS_FROM_KAFKA: bool.default(true),
  COMMAND_REPLIES: z.enum(['enabled', 'disabled']).default('disabled'),
});

export type Env = z.input<typeof envSchema>;

type Parsed = z.output<typeof envSchema>;

const addressOf = (value: string): RedisAddress => {
  const colon = value.lastIndexOf(':');
  return { host: value.slice(0, colon), port: Number(value.slice(colon + 1)) };
};

/** Which Redis deployment the variables describe; crossChecks made sure they describe exactly one. */
function redisTopology(e: Parsed): RedisTopology {
  if (e.REDIS_CLUSTER_NODES) return { kind: 'cluster', nodes: e.REDIS_CLUSTER_NODES.map(addressOf) };
  if (e.REDIS_SENTINELS) {
    return { kind: 'sentinel', sentinels: e.REDIS_SENTINELS.map(addressOf), masterName: e.REDIS_SENTINEL_MASTER ?? '', sentinelPassword: e.REDIS_SENTINEL_PASSWORD ?? null };
  }
  // The credentials travel apart from the URL, so REDIS_PASSWORD can complete a URL that names only the user.
  const url = new URL(e.REDIS_URL ?? '');
  url.username = '';
  url.password = '';
  return { kind: 'single', url: url.toString() };
}

/** The user or password REDIS_URL carries, or null. */
function urlCredential(value: string | undefined, part: 'username' | 'password'): string | null {
  if (value === undefined) return null;
  const raw = new URL(value)[part];
  return raw === '' ? null : decodeURIComponent(raw);
}

/** TLS to Redis: REDIS_TLS when set, otherwise what REDIS_URL's scheme says. */
const redisTls = (e: Parsed): boolean => e.REDIS_TLS ?? e.REDIS_URL?.startsWith('rediss:') ?? false;

type DeepReadonly<T> = T extends readonly (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/**
 * The environment as the service uses it: the one place where a variable
 * becomes a setting. `Config` is this function's result, so a variable is
 * declared in the schema above and placed here, nowhere else.
 */
function shape(e: Parsed, files: Readonly<Partial<Record<FileVariable, string>>>) {
  return {
    http: { host: e.HOST, port: e.PORT },
    /** A listener of its own for /metrics (METRICS_PORT); null = /metrics is served on the HTTP port. */
    metrics: e.METRICS_PORT === undefined ? null : { host: e.METRICS_HOST ?? e.HOST, port: e.METRICS_PORT },
    logLevel: e.LOG_LEVEL,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    /** On SIGTERM, how long the replica keeps answering, unready and closing each connection after its next answer, before it stops accepting (the pre-stop pause). */
    shutdownDrainDelayMs: e.SHUTDOWN_DRAIN_DELAY_MS,
    /** Keep-alive connections are closed after this many answers or this age (0 = no bound), so that a client's pool spreads over new replicas. */
    connections: { maxRequests: e.HTTP_CONNECTION_MAX_REQUESTS, maxAgeMs: e.HTTP_CONNECTION_MAX_AGE_MS },
    postgres: { url: e.DATABASE_URL, poolMax: e.DATABASE_POOL_MAX, migrateOnStart: e.MIGRATE_ON_START },
    redis: {
      keyPrefix: e.REDIS_KEY_PREFIX,
      topology: redisTopology(e),
      /** The ACL user and password of the data nodes (REDIS_USERNAME / REDIS_PASSWORD, or those of REDIS_URL); null = none. */
      username: e.REDIS_USERNAME ?? urlCredential(e.REDIS_URL, 'username'),
      password: e.REDIS_PASSWORD ?? urlCredential(e.REDIS_URL, 'password'),
      /** TLS to every Redis process, with the CA to trust (else the system's); null = plaintext. */
      tls: redisTls(e) ? { ...(files.REDIS_TLS_CA_FILE !== undefined ? { ca: files.REDIS_TLS_CA_FILE } : {}) } : null,
    },
    kafka: {
      brokers: e.KAFKA_BROKERS,
      clientId: e.KAFKA_CLIENT_ID,
      topicPrefix: e.KAFKA_TOPIC_PREFIX,
      topicPartitions: e.KAFKA_TOPIC_PARTITIONS,
      topicReplicationFactor: e.KAFKA_TOPIC_REPLICATION_FACTOR,
      producerPoolSize: e.KAFKA_PRODUCERS,
      maxBatchBytes: e.KAFKA_MAX_BATCH_BYTES,
      /** SASL over the connection (TLS or not); null without KAFKA_SASL_MECHANISM. */
      sasl:
        e.KAFKA_SASL_MECHANISM && e.KAFKA_SASL_USERNAME && e.KAFKA_SASL_PASSWORD
          ? { mechanism: e.KAFKA_SASL_MECHANISM, username: e.KAFKA_SASL_USERNAME, password: e.KAFKA_SASL_PASSWORD }
          : null,
      /** TLS to the brokers, with the CA to trust (else the system's) and a client certificate for mutual TLS; null = plaintext. */
      tls: e.KAFKA_TLS
        ? {
            ...(files.KAFKA_TLS_CA_FILE !== undefined ? { ca: files.KAFKA_TLS_CA_FILE } : {}),
            ...(files.KAFKA_TLS_CERT_FILE !== undefined && files.KAFKA_TLS_KEY_FILE !== undefined
              ? { cert: files.KAFKA_TLS_CERT_FILE, key: files.KAFKA_TLS_KEY_FILE }
              : {}),
          }
        : null,
    },
    admin: { rootToken: e.ADMIN_TOKEN },
    emqx: {
      /** Bearer tokens accepted on /emqx/*: the current one, and the one it replaces while set. */
      hookTokens: [e.EMQX_HOOK_TOKEN, ...(e.EMQX_HOOK_TOKEN_PREVIOUS ? [e.EMQX_HOOK_TOKEN_PREVIOUS] : [])],
      apiUrl: e.EMQX_API_URL.replace(/\/+$/, ''),
      apiKey: e.EMQX_API_KEY,
      apiSecret: e.EMQX_API_SECRET,
      apiTimeoutMs: e.EMQX_API_TIMEOUT_MS,
    },
    credentials: {
      argon2: { memoryKib: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST, parallelism: e.ARGON2_PARALLELISM },
      cacheSecret: e.CREDENTIAL_CACHE_SECRET,
      /** HMAC key of stored API key digests, and the one it replaced (tried second while set). */
      keyDigestSecret: e.KEY_DIGEST_SECRET,
      keyDigestSecretPrevious: e.KEY_DIGEST_SECRET_PREVIOUS ?? null,
      cacheTtlS: e.CREDENTIAL_CACHE_TTL_S,
      // One core is left to the event loop: argon2 on every core starves the
      // requests that are only cache hits or refusals.
      hashConcurrency: e.ARGON2_CONCURRENCY || Math.max(1, availableParallelism() - 1),
      hashMaxWaitMs: e.ARGON2_MAX_WAIT_MS,
      duplicateClientPolicy: e.DUPLICATE_CLIENT_POLICY,
    },
    liveness: { sweepIntervalMs: e.LIVENESS_SWEEP_INTERVAL_MS, flushIntervalMs: e.LIVENESS_FLUSH_INTERVAL_MS },
    ingest: {
      limits: {
        maxPayloadBytes: e.INGEST_MAX_PAYLOAD_BYTES,
        maxFields: e.INGEST_MAX_FIELDS,
        maxKeyLength: e.INGEST_MAX_KEY_LENGTH,
        maxStringBytes: e.INGEST_MAX_STRING_BYTES,
        maxDepth: e.INGEST_MAX_DEPTH,
        timestampMaxAgeMs: e.INGEST_TIMESTAMP_MAX_AGE_S * 1000,
        timestampMaxAheadMs: e.INGEST_TIMESTAMP_MAX_AHEAD_S * 1000,
      },
      /**
       * The largest `/emqx/events` body an allowed payload makes: the payload
       * after the rule's base64, plus the event around it. A larger body is
       * dead-lettered.
       */
      maxEventBytes: Math.ceil(e.INGEST_MAX_PAYLOAD_BYTES / 3) * 4 + EVENT_ENVELOPE_BYTES,
      dedupWindowS: e.INGEST_DEDUP_WINDOW_S,
      lingerMs: e.INGEST_LINGER_MS,
      batchMax: e.INGEST_BATCH_MAX,
      maxInFlightBatches: e.INGEST_MAX_IN_FLIGHT_BATCHES,
      maxPending: e.INGEST_MAX_PENDING,
      maxPendingBytes: e.INGEST_MAX_PENDING_BYTES,
      produceTimeoutMs: e.INGEST_PRODUCE_TIMEOUT_MS,
      /** Telemetry read from the broker by shared subscription (INGEST_MQTT_URL); null = by the webhook only. */
      subscription: e.INGEST_MQTT_URL
        ? {
            url: e.INGEST_MQTT_URL,
            username: e.INGEST_MQTT_USERNAME ?? '',
            password: e.INGEST_MQTT_PASSWORD ?? '',
            ...(files.INGEST_MQTT_CA_FILE !== undefined ? { ca: files.INGEST_MQTT_CA_FILE } : {}),
            shareGroup: e.INGEST_MQTT_SHARE_GROUP,
            /** Each client's id is this, a dash and its number: stable across restarts, so a restarted replica resumes its sessions. */
            clientId: e.INGEST_MQTT_CLIENT_ID ?? defaultClientId(),
            clients: e.INGEST_MQTT_CLIENTS,
            receiveMaximum: e.INGEST_MQTT_RECEIVE_MAXIMUM,
            sessionExpiryS: e.INGEST_MQTT_SESSION_EXPIRY_S,
          }
        : null,
    },
    commands: {
      maxPendingPerDevice: e.COMMANDS_MAX_PENDING_PER_DEVICE,
      retentionDays: e.COMMANDS_RETENTION_DAYS,
      pollIntervalMs: e.COMMANDS_POLL_INTERVAL_MS,
      /** Whether this replica consumes command requests from Kafka (commands.{tenant}). */
      fromKafka: e.COMMANDS_FROM_KAFKA,
      /** Devices may publish replies on devices/{id}/command-replies (COMMAND_REPLIES=enabled). */
      replies: e.COMMAND_REPLIES === 'enabled',
    },
  };
}

/** The subscriber's client-id stem when none is set: the host's name (a pod's, stable in a StatefulSet), cut to fit. */
function defaultClientId(): string {
  return `dlm-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}`.slice(0, 48);
}

/** The parsed configuration, frozen; passed down, never read from a global. */
export type Config = DeepReadonly<ReturnType<typeof shape>>;

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

type FileReader = (path: string) => string;

const readSecretFile: FileReader = (path) => readFileSync(path, 'utf8');

/** Resolves `NAME_FILE` variables into `NAME`, reporting problems by variable name. */
function resolveSecretFiles(env: NodeJS.ProcessEnv, readFile: FileReader, problems: string[]) {
  const resolved: Record<string, string | undefined> = { ...env };
  for (const name of SECRET_VARIABLES) {
    const fileVariable = `${name}_FILE`;
    const path = env[fileVariable];
    if (path === undefined || path === '') continue;
    if (env[name] !== undefined && env[name] !== '') {
      problems.push(`${name}: set both ${name} and ${fileVariable}; set only one`);
      continue;
    }
    try {
      // Secret files conventionally end with a newline that is not part of the value.
      resolved[name] = readFile(path).replace(/\r?\n$/, '');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      problems.push(`${fileVariable}: cannot read the file (${code})`);
    }
  }
  // An empty variable means "not set", so a default or a "required" message applies.
  for (const [name, value] of Object.entries(resolved)) {
    if (value === '') resolved[name] = undefined;
  }
  for (const name of SECRET_VARIABLES) {
    const value = resolved[name];
    if (value !== undefined && EXAMPLE_SECRET_MARK.test(value)) {
      problems.push(`${name}: holds a published example value ("change-me"); generate one, e.g. openssl rand -hex 32`);
    }
  }
  return resolved;
}

/** One secret variable on its own (NAME or NAME_FILE), for tools that need nothing else. */
export function readSecretVariable(
  name: (typeof SECRET_VARIABLES)[number],
  env: NodeJS.ProcessEnv = process.env,
  readFile: FileReader = readSecretFile,
): string {
  const problems: string[] = [];
  const value = resolveSecretFiles(env, readFile, problems)[name];
  if (problems.length > 0) throw new ConfigError(problems);
  if (value === undefined) throw new ConfigError([`${name}: is required`]);
  return value;
}

/**
 * Parses the environment once. Throws ConfigError naming every bad variable;
 * secret values never appear in the message.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, readFile: FileReader = readSecretFile): Config {
  const problems: string[] = [];
  const resolved = resolveSecretFiles(env, readFile, problems);
  const parsed = envSchema.safeParse(resolved);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      const message = resolved[name] === undefined ? 'is required' : issue.message;
      problems.push(`${name}: ${message}`);
    }
  }
  if (parsed.success) problems.push(...crossChecks(parsed.data));
  const files = parsed.success ? readConfiguredFiles(parsed.data, readFile, problems) : {};
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);

  return deepFreeze(shape(parsed.data, files));
}

/** Settings that only make sense together; each problem names a variable. */
function crossChecks(e: Parsed): string[] {
  const problems: string[] = [];
  // Otherwise /metrics would stay on the HTTP port while the operator believes it moved.
  if (e.METRICS_HOST !== undefined && e.METRICS_PORT === undefined) problems.push('METRICS_HOST: is set without METRICS_PORT; set both, or neither');
  const sasl = [e.KAFKA_SASL_MECHANISM, e.KAFKA_SASL_USERNAME, e.KAFKA_SASL_PASSWORD];
  if (sasl.some((value) => value !== undefined) && !sasl.every((value) => value !== undefined)) {
    for (const [name, value] of [['KAFKA_SASL_MECHANISM', e.KAFKA_SASL_MECHANISM], ['KAFKA_SASL_USERNAME', e.KAFKA_SASL_USERNAME], ['KAFKA_SASL_PASSWORD', e.KAFKA_SASL_PASSWORD]] as const) {
      if (value === undefined) problems.push(`${name}: is required with the other KAFKA_SASL_* variables`);
    }
  }
  if ((e.KAFKA_TLS_CERT_FILE === undefined) !== (e.KAFKA_TLS_KEY_FILE === undefined)) {
    problems.push(`${e.KAFKA_TLS_CERT_FILE === undefined ? 'KAFKA_TLS_CERT_FILE' : 'KAFKA_TLS_KEY_FILE'}: mutual TLS needs both KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE`);
  }
  for (const name of KAFKA_FILE_VARIABLES) {
    if (e[name] !== undefined && !e.KAFKA_TLS) problems.push(`${name}: is set but KAFKA_TLS is not true`);
  }
  problems.push(...redisChecks(e));
  problems.push(...subscriptionChecks(e));
  return problems;
}

/** The subscriber's identity is needed when it is on, and its settings mean nothing when it is off. */
function subscriptionChecks(e: Parsed): string[] {
  const problems: string[] = [];
  if (e.INGEST_MQTT_URL === undefined) {
    for (const [name, value] of [
      ['INGEST_MQTT_USERNAME', e.INGEST_MQTT_USERNAME],
      ['INGEST_MQTT_PASSWORD', e.INGEST_MQTT_PASSWORD],
      ['INGEST_MQTT_CA_FILE', e.INGEST_MQTT_CA_FILE],
    ] as const) {
      if (value !== undefined) problems.push(`${name}: is set without INGEST_MQTT_URL`);
    }
    return problems;
  }
  if (e.INGEST_MQTT_USERNAME === undefined) problems.push('INGEST_MQTT_USERNAME: is required with INGEST_MQTT_URL (the service identity the broker knows)');
  if (e.INGEST_MQTT_PASSWORD === undefined) problems.push('INGEST_MQTT_PASSWORD: is required with INGEST_MQTT_URL');
  // A device's id is a UUID: the service identity must never be one, or it could be taken for a device.
  if (e.INGEST_MQTT_USERNAME !== undefined && isDeviceId(e.INGEST_MQTT_USERNAME)) {
    problems.push('INGEST_MQTT_USERNAME: must not look like a device id (a UUID)');
  }
  if (e.INGEST_MQTT_CA_FILE !== undefined && !e.INGEST_MQTT_URL.startsWith('mqtts:')) problems.push('INGEST_MQTT_CA_FILE: is set but INGEST_MQTT_URL is not mqtts://');
  return problems;
}

/** The Redis variables describe one deployment, and give each setting once. */
function redisChecks(e: Parsed): string[] {
  const problems: string[] = [];
  const topologies = (
    [
      ['REDIS_URL', e.REDIS_URL],
      ['REDIS_CLUSTER_NODES', e.REDIS_CLUSTER_NODES],
      ['REDIS_SENTINELS', e.REDIS_SENTINELS],
    ] as const
  ).filter(([, value]) => value !== undefined);
  if (topologies.length === 0) {
    problems.push('REDIS_URL: is required (or REDIS_CLUSTER_NODES for a Redis Cluster, or REDIS_SENTINELS with REDIS_SENTINEL_MASTER for Sentinel)');
  }
  for (const [name] of topologies.slice(1)) {
    problems.push(`${name}: is set with ${topologies[0]?.[0]}; set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS`);
  }
  if (e.REDIS_SENTINELS !== undefined && e.REDIS_SENTINEL_MASTER === undefined) {
    problems.push('REDIS_SENTINEL_MASTER: is required with REDIS_SENTINELS (the name the Sentinels monitor the primary under)');
  }
  for (const [name, value] of [['REDIS_SENTINEL_MASTER', e.REDIS_SENTINEL_MASTER], ['REDIS_SENTINEL_PASSWORD', e.REDIS_SENTINEL_PASSWORD]] as const) {
    if (value !== undefined && e.REDIS_SENTINELS === undefined) problems.push(`${name}: is set without REDIS_SENTINELS`);
  }
  if (e.REDIS_URL !== undefined) {
    const url = new URL(e.REDIS_URL);
    try {
      decodeURIComponent(url.username + url.password);
    } catch {
      problems.push('REDIS_URL: its user or password is not valid percent-encoding');
    }
    if (e.REDIS_USERNAME !== undefined && url.username !== '') problems.push('REDIS_USERNAME: REDIS_URL names a user too; give it in one place');
    if (e.REDIS_PASSWORD !== undefined && url.password !== '') problems.push('REDIS_PASSWORD: REDIS_URL carries a password too; give it in one place');
    const rediss = url.protocol === 'rediss:';
    if (e.REDIS_TLS !== undefined && e.REDIS_TLS !== rediss) {
      problems.push(`REDIS_TLS: is ${e.REDIS_TLS} but REDIS_URL is ${url.protocol}//; use rediss:// for TLS and redis:// without, or leave REDIS_TLS unset`);
    }
  }
  if (e.REDIS_TLS_CA_FILE !== undefined && !redisTls(e)) problems.push('REDIS_TLS_CA_FILE: is set but TLS to Redis is off (REDIS_TLS=true, or a rediss:// REDIS_URL)');
  // The prefix comes first in every key: braces in it would make the prefix the hash tag of every key.
  if (e.REDIS_CLUSTER_NODES !== undefined && /[{}]/.test(e.REDIS_KEY_PREFIX)) {
    problems.push('REDIS_KEY_PREFIX: may not hold "{" or "}" on a Redis Cluster (they would make a hash tag of the prefix)');
  }
  return problems;
}

/** The contents of the files the configuration names (read once, at start-up). */
function readConfiguredFiles(e: Parsed, readFile: FileReader, problems: string[]): Partial<Record<FileVariable, string>> {
  const files: Partial<Record<FileVariable, string>> = {};
  for (const name of FILE_VARIABLES) {
    const path = e[name];
    if (path === undefined) continue;
    try {
      files[name] = readFile(path);
    } catch (error) {
      problems.push(`${name}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  }
  return files;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

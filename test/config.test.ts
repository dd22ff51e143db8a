import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, readSecretVariable } from '../src/config.js';

const base = {
  DATABASE_URL: 'postgres://user:pw@127.0.0.1:5432/db',
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  KAFKA_BROKERS: '127.0.0.1:9092, 127.0.0.2:9093',
  ADMIN_TOKEN: 'admin-token-0123456789abcdef',
  EMQX_HOOK_TOKEN: 'hook-token-0123456789abcdef',
  EMQX_API_URL: 'http://emqx:18083/',
  EMQX_API_KEY: 'key',
  EMQX_API_SECRET: 'api-secret-value',
  CREDENTIAL_CACHE_SECRET: 'cache-secret-0123456789abcdef',
  KEY_DIGEST_SECRET: 'key-digest-secret-0123456789abcdefghij',
};

function problemsOf(env: Record<string, string>, readFile?: (path: string) => string): string[] {
  try {
    loadConfig(env, readFile);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return [...error.problems];
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig', () => {
  it('applies defaults and normalizes values', () => {
    const config = loadConfig(base);
    assert.equal(config.http.port, 8080);
    assert.equal(config.http.host, '0.0.0.0');
    assert.equal(config.logLevel, 'info');
    assert.deepEqual(config.kafka.brokers, ['127.0.0.1:9092', '127.0.0.2:9093']);
    assert.equal(config.kafka.clientId, 'device-link-mqtt');
    assert.equal(config.emqx.apiUrl, 'http://emqx:18083');
    assert.equal(config.postgres.migrateOnStart, true);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.kafka));
  });

  it('gives /metrics a listener of its own only with METRICS_PORT, on HOST unless METRICS_HOST says otherwise', () => {
    assert.equal(loadConfig(base).metrics, null);
    assert.deepEqual(loadConfig({ ...base, METRICS_PORT: '' }).metrics, null);
    assert.deepEqual(loadConfig({ ...base, HOST: '10.0.0.5', METRICS_PORT: '9464' }).metrics, { host: '10.0.0.5', port: 9464 });
    assert.deepEqual(loadConfig({ ...base, METRICS_PORT: '9464', METRICS_HOST: '127.0.0.1' }).metrics, { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(problemsOf({ ...base, METRICS_HOST: '127.0.0.1' }), ['METRICS_HOST: is set without METRICS_PORT; set both, or neither']);
    assert.deepEqual(problemsOf({ ...base, METRICS_PORT: '70000' }).map((problem) => problem.split(':')[0]), ['METRICS_PORT']);
  });

  it('reaches Kafka over SASL and TLS, reading the PEM files once and the password from a file if asked', () => {
    const files: Record<string, string> = { '/run/ca.pem': 'CA PEM', '/run/client.pem': 'CERT PEM', '/run/client.key': 'KEY PEM', '/run/kafka-password': 'kafka-secret\n' };
    const read = (path: string) => {
      const content = files[path];
      if (content === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return content;
    };
    const config = loadConfig(
      {
        ...base,
        KAFKA_SASL_MECHANISM: 'scram-sha-512',
        KAFKA_SASL_USERNAME: 'devicelink',
        KAFKA_SASL_PASSWORD_FILE: '/run/kafka-password',
        KAFKA_TLS: 'true',
        KAFKA_TLS_CA_FILE: '/run/ca.pem',
        KAFKA_TLS_CERT_FILE: '/run/client.pem',
        KAFKA_TLS_KEY_FILE: '/run/client.key',
      },
      read,
    );
    assert.deepEqual(config.kafka.sasl, { mechanism: 'scram-sha-512', username: 'devicelink', password: 'kafka-secret' });
    assert.deepEqual(config.kafka.tls, { ca: 'CA PEM', cert: 'CERT PEM', key: 'KEY PEM' });
    assert.deepEqual([loadConfig(base).kafka.sasl, loadConfig(base).kafka.tls], [null, null]);
    assert.deepEqual(loadConfig({ ...base, KAFKA_TLS: 'true' }).kafka.tls, {}, 'TLS with the system CAs');

    const names = (env: Record<string, string>) => problemsOf({ ...base, ...env }, read).map((problem) => problem.split(':')[0]).sort();
    assert.deepEqual(names({ KAFKA_SASL_MECHANISM: 'scram-sha-512' }), ['KAFKA_SASL_PASSWORD', 'KAFKA_SASL_USERNAME']);
    assert.deepEqual(names({ KAFKA_SASL_MECHANISM: 'gssapi', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }), ['KAFKA_SASL_MECHANISM']);
    assert.deepEqual(names({ KAFKA_TLS: 'true', KAFKA_TLS_CERT_FILE: '/run/client.pem' }), ['KAFKA_TLS_KEY_FILE'], 'the missing half of the pair');
    assert.deepEqual(names({ KAFKA_TLS_CA_FILE: '/run/ca.pem' }), ['KAFKA_TLS_CA_FILE'], 'a CA without KAFKA_TLS=true');
    const unreadable = problemsOf({ ...base, KAFKA_TLS: 'true', KAFKA_TLS_CA_FILE: '/nowhere/ca.pem' }, read);
    assert.deepEqual(unreadable, ['KAFKA_TLS_CA_FILE: cannot read the file (ENOENT)']);
    const wrongPassword = problemsOf({ ...base, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'change-me-please' }, read);
    assert.ok(wrongPassword.every((problem) => !problem.includes('change-me-please')));
  });

  it('reaches one Redis node through REDIS_URL, the credentials kept apart from the URL', () => {
    const { REDIS_URL: _url, ...withoutRedis } = base;
    const single = loadConfig({ ...withoutRedis, REDIS_URL: 'redis://svc:p%40ss@redis.internal:6380/2' }).redis;
    assert.deepEqual(single.topology, { kind: 'single', url: 'redis://redis.internal:6380/2' });
    assert.deepEqual([single.username, single.password, single.tls], ['svc', 'p@ss', null]);
    const fromFile = loadConfig({ ...withoutRedis, REDIS_URL: 'rediss://svc@redis.internal:6380', REDIS_PASSWORD_FILE: '/run/redis' }, () => 'file-password\n').redis;
    assert.deepEqual([fromFile.username, fromFile.password, fromFile.tls], ['svc', 'file-password', {}], 'rediss:// is TLS with the system CAs');
    const plain = loadConfig(base).redis;
    assert.deepEqual([plain.username, plain.password, plain.tls], [null, null, null]);
  });

  it('reaches a Redis Cluster or a Sentinel-watched primary instead, without REDIS_URL', () => {
    const { REDIS_URL: _url, ...withoutRedis } = base;
    const files: Record<string, string> = { '/run/ca.pem': 'REDIS CA', '/run/sentinel': 'sentinel-secret\n' };
    const read = (path: string) => files[path] ?? assert.fail(`unexpected read of ${path}`);
    const cluster = loadConfig({ ...withoutRedis, REDIS_CLUSTER_NODES: 'redis-0:6379, redis-1:6379', REDIS_PASSWORD: 'pw', REDIS_TLS: 'true', REDIS_TLS_CA_FILE: '/run/ca.pem' }, read).redis;
    assert.deepEqual(cluster.topology, { kind: 'cluster', nodes: [{ host: 'redis-0', port: 6379 }, { host: 'redis-1', port: 6379 }] });
    assert.deepEqual([cluster.password, cluster.tls], ['pw', { ca: 'REDIS CA' }]);
    const sentinel = loadConfig(
      { ...withoutRedis, REDIS_SENTINELS: 's1:26379,s2:26379,s3:26379', REDIS_SENTINEL_MASTER: 'primary', REDIS_SENTINEL_PASSWORD_FILE: '/run/sentinel', REDIS_USERNAME: 'svc', REDIS_PASSWORD: 'pw' },
      read,
    ).redis;
    assert.deepEqual(sentinel.topology, {
      kind: 'sentinel',
      sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }, { host: 's3', port: 26379 }],
      masterName: 'primary',
      sentinelPassword: 'sentinel-secret',
    });
    assert.deepEqual([sentinel.username, sentinel.password, sentinel.tls], ['svc', 'pw', null]);
  });

  it('refuses Redis settings that do not describe one deployment, naming the variable', () => {
    const { REDIS_URL: _url, ...withoutRedis } = base;
    const names = (env: Record<string, string>) => problemsOf({ ...withoutRedis, ...env }, () => 'PEM').map((problem) => problem.split(':')[0]).sort();
    assert.deepEqual(names({}), ['REDIS_URL'], 'none at all');
    assert.deepEqual(names({ REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'r:6379' }), ['REDIS_CLUSTER_NODES']);
    assert.deepEqual(names({ REDIS_CLUSTER_NODES: 'r:6379', REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_MASTER: 'm' }), ['REDIS_SENTINELS']);
    assert.deepEqual(names({ REDIS_SENTINELS: 's:26379' }), ['REDIS_SENTINEL_MASTER']);
    assert.deepEqual(names({ REDIS_URL: 'redis://r:6379', REDIS_SENTINEL_MASTER: 'm', REDIS_SENTINEL_PASSWORD: 'p' }), ['REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD']);
    assert.deepEqual(names({ REDIS_CLUSTER_NODES: 'no-port' }), ['REDIS_CLUSTER_NODES']);
    assert.deepEqual(names({ REDIS_URL: 'redis://:pw@r:6379', REDIS_PASSWORD: 'pw' }), ['REDIS_PASSWORD'], 'the password twice');
    assert.deepEqual(names({ REDIS_URL: 'redis://:p%zz@r:6379' }), ['REDIS_URL'], 'a password that does not decode');
    assert.deepEqual(names({ REDIS_URL: 'redis://svc@r:6379', REDIS_USERNAME: 'svc' }), ['REDIS_USERNAME'], 'the user twice');
    assert.deepEqual(names({ REDIS_URL: 'redis://r:6379', REDIS_TLS: 'true' }), ['REDIS_TLS'], 'TLS against a redis:// URL');
    assert.deepEqual(names({ REDIS_URL: 'rediss://r:6379', REDIS_TLS: 'false' }), ['REDIS_TLS']);
    assert.deepEqual(names({ REDIS_URL: 'redis://r:6379', REDIS_TLS_CA_FILE: '/run/ca.pem' }), ['REDIS_TLS_CA_FILE'], 'a CA without TLS');
    assert.deepEqual(names({ REDIS_CLUSTER_NODES: 'r:6379', REDIS_KEY_PREFIX: '{dlm}:' }), ['REDIS_KEY_PREFIX'], 'a hash tag in the prefix of a cluster');
    assert.equal(loadConfig({ ...withoutRedis, REDIS_CLUSTER_NODES: 'r:6379', REDIS_TLS: 'true', REDIS_TLS_CA_FILE: '/run/ca.pem' }, () => 'PEM').redis.tls?.ca, 'PEM');
    const secret = problemsOf({ ...withoutRedis, REDIS_CLUSTER_NODES: 'r:6379', REDIS_PASSWORD: 'change-me-now' });
    assert.deepEqual(secret.map((problem) => problem.split(':')[0]), ['REDIS_PASSWORD']);
    assert.ok(!secret.join('\n').includes('change-me-now'));
  });

  it('names each missing required variable', () => {
    const { ADMIN_TOKEN: _a, KAFKA_BROKERS: _k, ...env } = base;
    assert.deepEqual(problemsOf(env).sort(), ['ADMIN_TOKEN: is required', 'KAFKA_BROKERS: is required']);
  });

  it('treats an empty variable as missing', () => {
    assert.deepEqual(problemsOf({ ...base, DATABASE_URL: '' }), ['DATABASE_URL: is required']);
  });

  it('names malformed variables without echoing secret values', () => {
    const problems = problemsOf({
      ...base,
      PORT: 'eighty',
      DATABASE_URL: 'mysql://secret-password@db',
      KAFKA_BROKERS: 'no-port',
      ADMIN_TOKEN: 'short',
      LOG_LEVEL: 'loud',
    });
    const names = problems.map((problem) => problem.split(':')[0]).sort();
    assert.deepEqual(names, ['ADMIN_TOKEN', 'DATABASE_URL', 'KAFKA_BROKERS', 'LOG_LEVEL', 'PORT']);
    assert.ok(!problems.join('\n').includes('secret-password'));
  });

  it('reads secrets from NAME_FILE, dropping the trailing newline', () => {
    const { ADMIN_TOKEN: _a, EMQX_API_SECRET: _s, ...env } = base;
    const files: Record<string, string> = {
      '/run/secrets/admin': 'file-admin-token-0123456789\n',
      '/run/secrets/emqx': 'file-emqx-secret',
    };
    const config = loadConfig({ ...env, ADMIN_TOKEN_FILE: '/run/secrets/admin', EMQX_API_SECRET_FILE: '/run/secrets/emqx' }, (path) => {
      const content = files[path];
      if (content === undefined) throw Object.assign(new Error('missing'), { code: 'ENOENT' });
      return content;
    });
    assert.equal(config.admin.rootToken, 'file-admin-token-0123456789');
    assert.equal(config.emqx.apiSecret, 'file-emqx-secret');
  });

  it('refuses a published example secret ("change-me"), naming the variable and never the value', () => {
    const examples = {
      ADMIN_TOKEN: 'dev-admin-token-change-me-0123456789',
      EMQX_API_SECRET: 'dev-emqx-api-secret-CHANGE-ME',
      DATABASE_URL: 'postgres://devicelink:Change-Me@127.0.0.1:5432/db',
    };
    const problems = problemsOf({ ...base, ...examples });
    assert.deepEqual(problems.map((problem) => problem.split(':')[0]).sort(), ['ADMIN_TOKEN', 'DATABASE_URL', 'EMQX_API_SECRET']);
    for (const problem of problems) assert.match(problem, /published example value/);
    for (const value of Object.values(examples)) assert.ok(!problems.join('\n').includes(value), 'the value is not printed');

    const { KEY_DIGEST_SECRET: _k, ...withoutDigest } = base;
    const fromFile = problemsOf({ ...withoutDigest, KEY_DIGEST_SECRET_FILE: '/run/secrets/digest' }, () => 'dev-key-digest-secret-change-me-0123456789\n');
    assert.deepEqual(fromFile.map((problem) => problem.split(':')[0]), ['KEY_DIGEST_SECRET']);
    assert.throws(() => readSecretVariable('DATABASE_URL', { DATABASE_URL: examples.DATABASE_URL }), (error: ConfigError) => error.problems[0]?.startsWith('DATABASE_URL:') === true);
    // Only secrets: other variables may say what they like.
    assert.equal(loadConfig({ ...base, KAFKA_CLIENT_ID: 'change-me' }).kafka.clientId, 'change-me');
  });

  it('reports an unreadable NAME_FILE and a secret given twice', () => {
    const { ADMIN_TOKEN: _a, ...env } = base;
    const problems = problemsOf({ ...env, ADMIN_TOKEN_FILE: '/nope', EMQX_HOOK_TOKEN_FILE: '/also' }, () => {
      throw Object.assign(new Error('missing'), { code: 'ENOENT' });
    });
    assert.ok(problems.includes('ADMIN_TOKEN_FILE: cannot read the file (ENOENT)'), problems.join());
    assert.ok(problems.some((p) => p.startsWith('EMQX_HOOK_TOKEN: set both')), problems.join());
  });
});

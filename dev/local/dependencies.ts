import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';

const run = promisify(execFile);

/** Something `npm run local` needs that is not there, with what to do about it. */
export class MissingDependency extends Error {
  override name = 'MissingDependency';
}

/** What a start did, so that the teardown undoes exactly that. */
export interface Started {
  readonly what: string;
  stop(): Promise<void>;
}

async function onPath(command: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${command}`]);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(500);
  }
  return check();
}

export async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function redisAnswers(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 2000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/**
 * Postgres at `url` (any database of the server), started from the machine's own cluster (Debian's
 * `pg_ctlcluster`, as .ci/run does) when it does not answer and `url` is the
 * default local address. Returns what it started, if anything.
 */
/** Where an address came from: the default (this run may start the service) or the variable that set it. */
export interface Origin {
  readonly isDefault: boolean;
  /** The variable that sets this address (named in messages). */
  readonly variable: string;
}

export async function ensurePostgres(url: string, { isDefault, variable }: Origin): Promise<Started | null> {
  // The server answers through its maintenance database: the service's own may not exist yet.
  const server = maintenanceUrl(url);
  if (await postgresAnswers(server)) return null;
  if (!isDefault) throw new MissingDependency(`PostgreSQL does not answer at ${new URL(url).host} (${variable}).`);
  const versions = (await onPath('pg_ctlcluster')) ? await readdir('/etc/postgresql').catch(() => []) : [];
  const version = versions.sort().at(-1);
  if (version === undefined) {
    throw new MissingDependency(
      `PostgreSQL does not answer at ${new URL(url).host}, and there is no local cluster to start (pg_ctlcluster).\n` +
        '  Install and start it (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql@16 && brew services start postgresql@16)\n' +
        `  with user postgres allowed in from 127.0.0.1 without a password, or set ${variable} to a database that answers.`,
    );
  }
  const cluster = ['--skip-systemctl-redirect', version, 'main'];
  await run('pg_ctlcluster', [...cluster, 'start']).catch((error: unknown) => {
    throw new MissingDependency(`PostgreSQL does not answer and "pg_ctlcluster ${version} main start" failed: ${String(error)}`);
  });
  if (!(await waitUntil(() => postgresAnswers(server), 30_000))) {
    throw new MissingDependency(`PostgreSQL ${version} started but does not let postgres in at ${new URL(url).host} without a password (see its pg_hba.conf), or set ${variable}.`);
  }
  return { what: `PostgreSQL ${version}`, stop: () => run('pg_ctlcluster', [...cluster, 'stop']).then(() => undefined) };
}

/** Redis at `url`, started with the machine's `redis-server` (as .ci/run does) when it does not answer at the default address. */
export async function ensureRedis(url: string, { isDefault, variable }: Origin): Promise<Started | null> {
  if (await redisAnswers(url)) return null;
  if (!isDefault) throw new MissingDependency(`Redis does not answer at ${new URL(url).host} (${variable}).`);
  if (!(await onPath('redis-server'))) {
    throw new MissingDependency(
      `Redis does not answer at ${new URL(url).host}, and there is no redis-server to start.\n` +
        `  Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis), version 6.2 or later, or set ${variable}.`,
    );
  }
  const { hostname, port } = new URL(url);
  await run('redis-server', ['--daemonize', 'yes', '--bind', hostname, '--port', port || '6379', '--save', '', '--appendonly', 'no']);
  if (!(await waitUntil(() => redisAnswers(url), 15_000))) throw new MissingDependency(`redis-server started but does not answer at ${hostname}:${port}.`);
  return {
    what: 'Redis',
    stop: () => run('redis-cli', ['-h', hostname, '-p', port || '6379', 'shutdown', 'nosave']).then(() => undefined, () => undefined),
  };
}

/** Kafka at `brokers`; at the default address, started with the project's scripts/kafka.sh when no broker answers. */
export async function ensureKafka(repo: string, brokers: string, { isDefault, variable }: Origin): Promise<Started | null> {
  const script = `${repo}/scripts/kafka.sh`;
  const first = brokers.split(',')[0] ?? '';
  const answers = () =>
    run(process.execPath, [`${repo}/scripts/kafka-ping.mjs`, first]).then(
      () => true,
      () => false,
    );
  if (await answers()) return null;
  if (!isDefault) throw new MissingDependency(`Kafka does not answer at ${first}: start it, or leave ${variable} unset to have scripts/kafka.sh start one.`);
  const missing = [];
  if (!(await onPath('java'))) missing.push('java (17 or later)');
  if (!(await onPath('mvn'))) missing.push('mvn');
  if (missing.length > 0) {
    throw new MissingDependency(
      `Kafka does not answer at ${brokers}, and scripts/kafka.sh cannot start one without ${missing.join(' and ')}.\n` +
        '  Install them (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless maven; macOS: brew install openjdk@17 maven),\n' +
        `  or set ${variable} to a Kafka or Redpanda that answers.`,
    );
  }
  console.log('starting Kafka with scripts/kafka.sh (the first start resolves it from Maven Central)');
  try {
    await run(script, ['start'], { maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const output = error as { stderr?: string };
    throw new MissingDependency(`scripts/kafka.sh start failed:\n${output.stderr ?? String(error)}`);
  }
  return { what: 'Kafka', stop: () => run(script, ['stop']).then(() => undefined) };
}

function maintenanceUrl(url: string): string {
  const server = new URL(url);
  server.pathname = '/postgres';
  return server.toString();
}

/** Creates the database of `url` when the server answers but the database does not exist yet. */
export async function ensureDatabase(url: string): Promise<void> {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  const client = new pg.Client({ connectionString: maintenanceUrl(url), connectionTimeoutMillis: 2000 });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      console.log(`local: created database ${name}`);
    }
  } finally {
    await client.end();
  }
}

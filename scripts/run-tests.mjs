// Runs every test/**/*.test.ts file with node's built-in test runner. Each file
// runs in its own process; files are isolated (own database, Redis prefix and
// Kafka topics) so several run at once. The files under test/fault/ restart
// dependencies of their own and load the machine: they run after the others,
// one at a time. Arguments narrow the run to the files whose path contains
// one of them (`!part` leaves out those whose path contains it).
//
// First it makes sure Postgres, Redis and Kafka answer at the test addresses,
// starting what does not as `npm run local` does (the machine's Postgres
// cluster and redis-server, scripts/kafka.sh), and stops what it started when
// the tests end; what cannot be started is named with how to get it.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The service runs on Node 24 (it uses what older releases lack, such as
// Promise.withResolvers). Started by an older node, the run hands itself to
// the Node 24 that scripts/node-24.sh provides, so the tests never pass or
// fail for a runtime the service does not ship on.
if (Number(process.versions.node.split('.')[0]) < 24) {
  const bin = execFileSync('bash', [fileURLToPath(new URL('node-24.sh', import.meta.url))], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  console.log(`tests: node ${process.version} is older than Node 24; running on ${path.join(bin, 'node')}`);
  const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` };
  const child = spawnSync(path.join(bin, 'node'), process.argv.slice(1), { stdio: 'inherit', env });
  process.exit(child.status ?? 1);
}
console.log(`tests: node ${process.version}`);

const { register } = await import('tsx/esm/api');
register();
const { ensureKafka, ensurePostgres, ensureRedis, MissingDependency } = await import('../dev/local/dependencies.ts');
const repo = fileURLToPath(new URL('..', import.meta.url));

function findTests(dir) {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) return findTests(full);
    return entry.endsWith('.test.ts') ? [full] : [];
  });
}

// `!part` leaves out the files whose path contains it.
const args = process.argv.slice(2);
const filters = args.filter((arg) => !arg.startsWith('!'));
const excluded = args.filter((arg) => arg.startsWith('!')).map((arg) => arg.slice(1));
const files = findTests('test')
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .filter((file) => !excluded.some((part) => file.includes(part)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const fault = files.filter((file) => file.startsWith(path.join('test', 'fault') + path.sep));
const regular = files.filter((file) => !fault.includes(file));

const env = process.env;
const started = [];
const origin = (variable) => ({ isDefault: !env[variable], variable });
async function stopStarted() {
  for (const dependency of started.reverse()) {
    console.log(`tests: stopping ${dependency.what}, which this run started`);
    await dependency.stop().catch((error) => console.error(`tests: stopping ${dependency.what} failed: ${error}`));
  }
}
try {
  for (const ensure of [
    () => ensurePostgres(env.TEST_POSTGRES_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', origin('TEST_POSTGRES_ADMIN_URL')),
    // A Redis Cluster or a Sentinel-watched primary (TEST_REDIS_CLUSTER_NODES, TEST_REDIS_SENTINELS) is started by whoever set it.
    () =>
      env.TEST_REDIS_CLUSTER_NODES || env.TEST_REDIS_SENTINELS
        ? null
        : ensureRedis(env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0', origin('TEST_REDIS_URL')),
    // A secured broker (TEST_KAFKA_CLIENT_ENV) is started by whoever set it, with its settings.
    () => (env.TEST_KAFKA_CLIENT_ENV ? null : ensureKafka(repo, env.TEST_KAFKA_BROKERS ?? '127.0.0.1:19092', origin('TEST_KAFKA_BROKERS'))),
  ]) {
    const dependency = await ensure();
    if (dependency) {
      started.push(dependency);
      console.log(`tests: started ${dependency.what}; it is stopped again when the tests end`);
    }
  }
} catch (error) {
  console.error(error instanceof MissingDependency ? `tests: ${error.message}` : error);
  await stopStarted();
  process.exit(1);
}

function run(group, concurrency) {
  if (group.length === 0) return Promise.resolve(0);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...group],
    { stdio: 'inherit' },
  );
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ? 1 : (code ?? 1))));
}

// Ctrl-C reaches the test runners too; this process waits for them to end, then stops what it started.
let interrupted = false;
process.on('SIGINT', () => (interrupted = true));
const regularCode = await run(regular, env.TEST_CONCURRENCY ?? '3');
const faultCode = interrupted ? 1 : await run(fault, '1');
await stopStarted();
process.exit(regularCode || faultCode);

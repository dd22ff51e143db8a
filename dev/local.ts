/**
 * `npm run local`: the service, the EMQX simulation in front of it, and
 * what they need, on this machine, until Ctrl-C.
 *
 * Postgres, Redis and Kafka are used where they answer at the default local
 * addresses (or DATABASE_URL, REDIS_URL, KAFKA_BROKERS); what does not answer
 * is started where the machine can (its Postgres cluster, redis-server, the
 * project's scripts/kafka.sh), otherwise the run stops and says what is
 * missing. Development secrets, and the CA of the TLS listener, are generated
 * once into .local/ and reused.
 * Ctrl-C stops the simulation, the service, and whatever this run started;
 * services that were already running are left alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, type Consumer } from 'kafkajs';
import { createTopicNames } from '../src/lib/topics.js';
import { startEmqxSim, type EmqxSim } from './emqx-sim/emqx-sim.js';
import { consoleLog } from './emqx-sim/log.js';
import { httpTransport } from './emqx-sim/service.js';
import { REPO_ROOT } from './emqx-sim/emqx-config.js';
import { deviceCommands } from './local/commands.js';
import { ensureDemoDevice, type DemoDevice } from './local/demo.js';
import { ensureDatabase, ensureKafka, ensurePostgres, ensureRedis, MissingDependency, type Started } from './local/dependencies.js';
import { loadDevelopmentSecrets } from './local/secrets.js';
import { ensureDevelopmentCertificates } from './local/tls.js';

const LOCAL_DIR = path.join(REPO_ROOT, '.local');
const HOST = '127.0.0.1';
const EMQX_API_KEY = 'device-link';

const env = process.env;
const defaults = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/device_link_local',
  REDIS_URL: 'redis://127.0.0.1:6379/0',
  KAFKA_BROKERS: '127.0.0.1:19092',
};

const started: Started[] = [];
let service: ChildProcess | undefined;
let emqx: EmqxSim | undefined;
let tail: Consumer | undefined;
/** When the teardown began; 0 = running. */
let stoppingSince = 0;

function log(message: string) {
  console.log(`local: ${message}`);
}

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  server.listen(port, HOST);
  try {
    await once(server, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

/**
 * The port named by `variable`, or its default. A taken default (a system
 * mosquitto often holds 1883) is reported, naming the variable, and the next
 * free port is used; a port asked for explicitly must be free.
 */
async function choosePort(variable: string, fallback: number, what: string): Promise<number> {
  const asked = env[variable];
  if (asked !== undefined && asked !== '') {
    const port = Number(asked);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new MissingDependency(`${variable}=${asked} is not a port number`);
    if (!(await portFree(port))) throw new MissingDependency(`${what}: port ${port} (${variable}) is taken on ${HOST}; set ${variable} to a free port`);
    return port;
  }
  if (await portFree(fallback)) return fallback;
  for (let port = fallback + 1; port < fallback + 50; port += 1) {
    if (await portFree(port)) {
      log(`${what}: port ${fallback} is taken on ${HOST}${fallback === 1883 ? ' (a system mosquitto often holds it)' : ''}; using ${port} — set ${variable} to choose another`);
      return port;
    }
  }
  throw new MissingDependency(`${what}: port ${fallback} and the 49 after it are taken; set ${variable} to a free port`);
}

async function waitForReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the service exited (${child.exitCode ?? child.signalCode}) before it was ready`);
    try {
      if ((await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(500);
  }
  throw new Error(`the service was not ready at ${url}/readyz within 90 s`);
}

/** Prints the records of the demo tenant's topics as they arrive, from now on. */
async function tailDemoTopics(brokers: string[], topics: string[]): Promise<Consumer> {
  const kafka = new Kafka({ clientId: 'device-link-local', brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `device-link-local-${process.pid}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: false });
  const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      console.log(`kafka: ${topic} ← ${message.value?.toString() ?? 'null'}`);
    },
  });
  await Promise.race([joined, sleep(15_000)]);
  return consumer;
}

function printCommands(options: {
  servicePort: number;
  mqttPort: number;
  mqttsPort: number;
  caFile: string;
  apiUrl: string;
  adminToken: string;
  demo: DemoDevice;
  topics: string[];
  commandStatusTopic: string;
}) {
  const { demo } = options;
  const device = demo.deviceId;
  const service = `http://${HOST}:${options.servicePort}`;
  const commands = deviceCommands({
    host: HOST,
    mqttPort: options.mqttPort,
    mqttsPort: options.mqttsPort,
    caFile: options.caFile,
    deviceId: device,
    key: demo.key,
    serviceUrl: service,
    adminToken: options.adminToken,
  });
  console.log(`
device-link-mqtt is running locally.
  service        ${service}   admin token: ${options.adminToken}
  MQTT broker    ${HOST}:${options.mqttsPort} (TLS), ${HOST}:${options.mqttPort}   (the EMQX simulation, driven by deploy/emqx/emqx.conf)
  EMQX REST API  ${options.apiUrl}
  secrets        .local/secrets.json   demo device and key: .local/demo.json   development CA: ${path.relative(REPO_ROOT, options.caFile)}

Demo device ${device} of tenant ${demo.tenantId}. Publish telemetry as the device, over TLS as the product page does:

  ${commands.publishTls}

or in plain MQTT (local tries only: the key crosses in clear text):

  ${commands.publishPlain}

Subscribe to its commands at QoS 1, so that it acknowledges each (one session per device: a second connection is refused while this one is open):

  ${commands.subscribeTls}

The device's status ("online": true after its first telemetry):

  ${commands.status}

Send it a command (the subscriber above receives it; its progress appears on ${options.commandStatusTopic}):

  ${commands.sendCommand}

Records on ${options.topics.join(', ')} appear below as they arrive. Ctrl-C stops everything.
`);
}

async function teardown(code: number): Promise<never> {
  if (stoppingSince > 0) {
    // npm passes the terminal's Ctrl-C on as well, so one press can arrive twice: only a later one means "now".
    if (Date.now() - stoppingSince > 2000) process.exit(1);
    return new Promise<never>(() => undefined);
  }
  stoppingSince = Date.now();
  log('stopping (Ctrl-C again to leave without waiting)');
  await tail?.disconnect().catch(() => undefined);
  // The simulation first: its clients' disconnect events still reach the service.
  await emqx?.close(3000).catch(() => undefined);
  if (service && service.exitCode === null && service.signalCode === null) {
    service.kill('SIGTERM');
    const exited = once(service, 'exit');
    if ((await Promise.race([exited.then(() => true), sleep(25_000).then(() => false)])) === false) service.kill('SIGKILL');
  }
  for (const dependency of started.reverse()) {
    log(`stopping ${dependency.what}, which this run started`);
    await dependency.stop().catch((error: unknown) => log(`stopping ${dependency.what} failed: ${String(error)}`));
  }
  log('stopped');
  process.exit(code);
}

async function main() {
  process.on('SIGINT', () => void teardown(0));
  process.on('SIGTERM', () => void teardown(0));

  const databaseUrl = env.DATABASE_URL || defaults.DATABASE_URL;
  const redisUrl = env.REDIS_URL || defaults.REDIS_URL;
  const kafkaBrokers = env.KAFKA_BROKERS || defaults.KAFKA_BROKERS;

  const servicePort = await choosePort('PORT', 8080, 'the service');
  const mqttPort = await choosePort('LOCAL_MQTT_PORT', 1883, 'MQTT');
  const mqttsPort = await choosePort('LOCAL_MQTTS_PORT', 8883, 'MQTT over TLS');
  const apiPort = await choosePort('LOCAL_EMQX_API_PORT', 18083, 'the EMQX REST API');

  for (const ensure of [
    () => ensurePostgres(databaseUrl, { isDefault: !env.DATABASE_URL, variable: 'DATABASE_URL' }),
    () => ensureRedis(redisUrl, { isDefault: !env.REDIS_URL, variable: 'REDIS_URL' }),
    () => ensureKafka(REPO_ROOT, kafkaBrokers, { isDefault: !env.KAFKA_BROKERS, variable: 'KAFKA_BROKERS' }),
  ]) {
    const dependency = await ensure();
    if (dependency) {
      started.push(dependency);
      log(`started ${dependency.what}; Ctrl-C stops it again`);
    }
  }
  await ensureDatabase(databaseUrl);

  const { secrets, created } = await loadDevelopmentSecrets(LOCAL_DIR);
  if (created.length > 0) log(`generated ${created.join(', ')} into .local/secrets.json`);
  // The compose stack's script: a development CA made once, and the listener's certificate it signed.
  const certificates = await ensureDevelopmentCertificates(path.join(LOCAL_DIR, 'tls'));
  if (certificates.created) log('made a development CA and the TLS listener\'s certificate into .local/tls (deploy/emqx/dev-certs.sh)');
  // Values set in the environment win over the generated ones.
  const serviceEnv: NodeJS.ProcessEnv = {
    LOG_LEVEL: 'warn',
    ...secrets,
    EMQX_API_KEY: EMQX_API_KEY,
    ...env,
    PORT: String(servicePort),
    HOST,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    KAFKA_BROKERS: kafkaBrokers,
    EMQX_API_URL: `http://${HOST}:${apiPort}`,
  };
  const adminToken = serviceEnv.ADMIN_TOKEN as string;

  // Its own process group: Ctrl-C reaches this script alone, which stops the simulation before the service.
  service = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO_ROOT, env: serviceEnv, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  service.once('exit', (code, signal) => {
    if (stoppingSince === 0) {
      log(`the service exited (${code ?? signal})`);
      void teardown(1);
    }
  });
  const serviceUrl = `http://${HOST}:${servicePort}`;
  log(`starting the service on ${serviceUrl} (migrations first)`);
  await waitForReady(serviceUrl, service);

  // emqx.conf rendered as the EMQX container renders it, with this run's hook token and API key.
  emqx = await startEmqxSim({
    hookToken: serviceEnv.EMQX_HOOK_TOKEN as string,
    apiKey: serviceEnv.EMQX_API_KEY as string,
    apiSecret: serviceEnv.EMQX_API_SECRET as string,
    service: httpTransport(serviceUrl),
    mqtt: { host: HOST, port: mqttPort },
    mqtts: { host: HOST, port: mqttsPort, cert: certificates.cert, key: certificates.key },
    api: { host: HOST, port: apiPort },
    // A local run lasts as long as the developer wants: nothing reads the journal, which would only grow.
    journal: false,
    log: consoleLog('mqtt:'),
  });

  const { demo, created: demoCreated } = await ensureDemoDevice({ serviceUrl, adminToken, directory: LOCAL_DIR });
  if (demoCreated) log(`created the demo tenant "${demo.tenantId}", device ${demo.deviceId} and its key`);
  const names = createTopicNames(serviceEnv.KAFKA_TOPIC_PREFIX ?? '');
  const commandStatusTopic = names.commandStatus(demo.tenantId);
  const topics = [names.telemetryRaw(demo.tenantId), names.telemetryDlq(demo.tenantId), names.deviceEvents(demo.tenantId), commandStatusTopic];
  tail = await tailDemoTopics(kafkaBrokers.split(','), topics);
  printCommands({
    servicePort,
    mqttPort: emqx.mqttPort ?? mqttPort,
    mqttsPort: emqx.mqttsPort ?? mqttsPort,
    caFile: certificates.caFile,
    apiUrl: emqx.url,
    adminToken,
    demo,
    topics,
    commandStatusTopic,
  });
}

main().catch(async (error: unknown) => {
  console.error(error instanceof MissingDependency ? `local: ${error.message}` : error);
  await teardown(1);
});

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/mosquitto.sh', import.meta.url));

export interface PrivateMosquitto {
  /** mqtt://127.0.0.1:{port} */
  readonly url: string;
  /** The service identity (INGEST_MQTT_USERNAME / INGEST_MQTT_PASSWORD) and the share group its ACL allows. */
  readonly service: { username: string; password: string; group: string };
  /** Adds a user: a device (username = its id) or whatever MOSQUITTO_ACL_EXTRA names. */
  user(name: string, password: string): Promise<void>;
  start(): Promise<void>;
  /** Stops the broker; its persistence is kept, so start() brings the sessions back. */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * A Mosquitto 2 of the test's own (scripts/mosquitto.sh), on a free loopback
 * port: an MQTT 5 broker with shared subscriptions and the product's ACL.
 * The development EMQX simulation does not do shared subscriptions.
 */
export async function createPrivateMosquitto(options: { aclExtra?: string } = {}): Promise<PrivateMosquitto> {
  const port = await freePort();
  const home = await mkdtemp(path.join(os.tmpdir(), 'dlm-private-mosquitto-'));
  const service = { username: 'device-link-ingest', password: randomBytes(18).toString('base64url'), group: 'device-link' };
  const env = {
    ...process.env,
    MOSQUITTO_PORT: String(port),
    MOSQUITTO_HOME_DIR: home,
    MOSQUITTO_SERVICE_USER: service.username,
    MOSQUITTO_SERVICE_PASSWORD: service.password,
    MOSQUITTO_SHARE_GROUP: service.group,
    ...(options.aclExtra ? { MOSQUITTO_ACL_EXTRA: options.aclExtra } : {}),
  };
  const call = async (...args: string[]) => {
    await run('bash', [SCRIPT, ...args], { env, timeout: 30_000 });
  };
  // mosquitto_passwd rewrites the file: users are added one at a time.
  let users: Promise<unknown> = Promise.resolve();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    service,
    user(name, password) {
      const added = users.then(() => call('user', name, password));
      users = added.catch(() => undefined);
      return added;
    },
    start: () => call('start'),
    stop: () => call('stop'),
    async destroy() {
      await call('purge').catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    },
  };
}

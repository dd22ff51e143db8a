import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/kafka.sh', import.meta.url));

export interface PrivateKafka {
  readonly brokers: string;
  start(): Promise<void>;
  /** Stops the broker; its data is kept, so start() brings the same topics back. */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * A broker of the test's own, for tests that stop Kafka: stopping the shared
 * broker would break every other test file running at the same time.
 */
export async function createPrivateKafka(): Promise<PrivateKafka> {
  const port = await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  const home = await mkdtemp(path.join(os.tmpdir(), 'dlm-private-kafka-'));
  const env = {
    ...process.env,
    KAFKA_PORT: String(port),
    KAFKA_CONTROLLER_PORT: String(controllerPort),
    KAFKA_HOME_DIR: home,
    KAFKA_HEAP: '384m',
  };
  const call = async (command: string) => {
    await run('bash', [SCRIPT, command], { env, timeout: 120_000 });
  };
  return {
    brokers: `127.0.0.1:${port}`,
    start: () => call('start'),
    stop: () => call('stop'),
    async destroy() {
      await call('purge').catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    },
  };
}

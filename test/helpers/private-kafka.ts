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
  /** With `security: 'sasl_ssl'`: the file of KAFKA_* settings a client of it sets (scripts/kafka.sh writes it at start). */
  readonly clientEnv: string;
  start(): Promise<void>;
  /** Stops the broker; its data is kept, so start() brings the same topics back. */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * A broker of the test's own, for tests that stop Kafka: stopping the shared
 * broker would break every other test file running at the same time.
 */
export async function createPrivateKafka(options: { security?: 'plaintext' | 'sasl_ssl' } = {}): Promise<PrivateKafka> {
  const ports: number[] = [];
  while (ports.length < 4) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const [port, controllerPort, mtlsPort, internalPort] = ports as [number, number, number, number];
  const home = await mkdtemp(path.join(os.tmpdir(), 'dlm-private-kafka-'));
  const env = {
    ...process.env,
    KAFKA_PORT: String(port),
    KAFKA_CONTROLLER_PORT: String(controllerPort),
    KAFKA_MTLS_PORT: String(mtlsPort),
    KAFKA_INTERNAL_PORT: String(internalPort),
    KAFKA_SECURITY: options.security ?? 'plaintext',
    KAFKA_HOME_DIR: home,
    KAFKA_HEAP: '384m',
  };
  const call = async (command: string) => {
    await run('bash', [SCRIPT, command], { env, timeout: 120_000 });
  };
  return {
    brokers: `127.0.0.1:${port}`,
    clientEnv: path.join(home, 'client.env'),
    start: () => call('start'),
    stop: () => call('stop'),
    async destroy() {
      await call('purge').catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    },
  };
}

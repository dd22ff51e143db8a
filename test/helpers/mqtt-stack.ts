import type { FastifyInstance } from 'fastify';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { startDevBroker, type DevBroker } from '../../dev/emqx-sim/emqx-sim.js';
import { silentBrokerLog, type BrokerLog } from '../../dev/emqx-sim/log.js';
import { renderEmqxConfig } from '../../dev/emqx-sim/emqx-config.js';
import type { TestContext } from './context.js';
import { TEST_HOOK_TOKEN } from './env.js';
import { freePort } from './ports.js';

export interface MqttStack {
  readonly app: FastifyInstance;
  readonly broker: DevBroker;
  /** `mqtt://127.0.0.1:<port>` of the development broker. */
  readonly mqttUrl: string;
  /** An MQTT 3.1.1 client that never reconnects by itself; closed by close(). Rejects when the CONNECT is refused. */
  connect(options: IClientOptions): Promise<MqttClient>;
  close(): Promise<void>;
}

const API_KEY = 'mqtt-stack-key';
const API_SECRET = 'mqtt-stack-secret-0123456789';

/**
 * The service listening on an ephemeral port, on this test context's
 * database, Redis prefix and topic prefix, behind the development broker
 * (deploy/emqx/emqx.conf rendered with this app's hook token), each pointing
 * at the other: MQTT clients go through the broker as devices go through EMQX.
 */
export async function startMqttStack(
  ctx: TestContext,
  options: { overrides?: Record<string, string>; log?: BrokerLog; eventResumeIntervalMs?: number } = {},
): Promise<MqttStack> {
  // The service must know the broker's REST URL before either starts.
  const apiPort = await freePort();
  const app = await ctx.app({}, { EMQX_API_URL: `http://127.0.0.1:${apiPort}`, EMQX_API_KEY: API_KEY, EMQX_API_SECRET: API_SECRET, ...options.overrides });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || !address) throw new Error('the service is not listening');
  const { config } = await renderEmqxConfig({
    DEVICE_LINK_HOOK_TOKEN: TEST_HOOK_TOKEN,
    DEVICE_LINK_API_KEY: API_KEY,
    DEVICE_LINK_API_SECRET: API_SECRET,
  });
  const broker = await startDevBroker({
    config,
    serviceUrl: `http://127.0.0.1:${address.port}`,
    mqtt: { host: '127.0.0.1', port: 0 },
    api: { host: '127.0.0.1', port: apiPort, key: API_KEY, secret: API_SECRET },
    log: options.log ?? silentBrokerLog,
    ...(options.eventResumeIntervalMs !== undefined ? { eventResumeIntervalMs: options.eventResumeIntervalMs } : {}),
  });
  const mqttUrl = `mqtt://127.0.0.1:${broker.mqttPort}`;
  const clients: MqttClient[] = [];
  return {
    app,
    broker,
    mqttUrl,
    async connect(clientOptions) {
      const client = await connectAsync(mqttUrl, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...clientOptions }, false);
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.allSettled(clients.map((client) => client.endAsync(true)));
      await broker.close(1000);
    },
  };
}

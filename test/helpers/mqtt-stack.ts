import type { FastifyInstance } from 'fastify';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import type { EmqxSim } from '../../dev/emqx-sim/emqx-sim.js';
import type { SimLog } from '../../dev/emqx-sim/log.js';
import { httpTransport } from '../../dev/emqx-sim/service.js';
import type { TestContext } from './context.js';
import { emqxEnv, startTestEmqx } from './emqx.js';

export interface MqttStack {
  readonly app: FastifyInstance;
  readonly emqx: EmqxSim;
  /** `mqtt://127.0.0.1:<port>` of the simulation's MQTT listener. */
  readonly mqttUrl: string;
  /** `mqtts://127.0.0.1:<port>`, when started with a TLS certificate. */
  readonly mqttsUrl: string | null;
  /** An MQTT 3.1.1 client that never reconnects by itself; closed by close(). Rejects when the CONNECT is refused. */
  connect(options: IClientOptions, url?: string): Promise<MqttClient>;
  close(): Promise<void>;
}

/**
 * The service listening on an ephemeral port, on this test context's
 * database, Redis prefix and topic prefix, behind the EMQX simulation with
 * MQTT listeners (and TLS when given a certificate), each pointing at the
 * other: MQTT clients go through it as devices go through EMQX.
 */
export async function startMqttStack(
  ctx: TestContext,
  options: { overrides?: Record<string, string>; log?: SimLog; tls?: { cert: string | Buffer; key: string | Buffer } } = {},
): Promise<MqttStack> {
  const emqx = await startTestEmqx({
    mqtt: { host: '127.0.0.1', port: 0 },
    ...(options.tls ? { mqtts: { host: '127.0.0.1', port: 0, ...options.tls } } : {}),
    ...(options.log ? { log: options.log } : {}),
  });
  const app = await ctx.app({}, { ...emqxEnv(emqx), ...options.overrides });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (typeof address !== 'object' || !address) throw new Error('the service is not listening');
  emqx.useService(httpTransport(`http://127.0.0.1:${address.port}`));
  const mqttUrl = `mqtt://127.0.0.1:${emqx.mqttPort}`;
  const clients: MqttClient[] = [];
  return {
    app,
    emqx,
    mqttUrl,
    mqttsUrl: emqx.mqttsPort === null ? null : `mqtts://127.0.0.1:${emqx.mqttsPort}`,
    async connect(clientOptions, url = mqttUrl) {
      const client = await connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...clientOptions }, false);
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.allSettled(clients.map((client) => client.endAsync(true)));
      await emqx.close(1000);
    },
  };
}

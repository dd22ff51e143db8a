import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { startEmqxSim, type EmqxSim, type EmqxSimOptions, type ServiceTransport } from '../../dev/emqx-sim/emqx-sim.js';
import { TEST_HOOK_TOKEN } from './env.js';

/**
 * EMQX as the tests meet it: the one simulation, with emqx.conf rendered for
 * the test apps' hook token, a fresh API secret, and the HTTP action's
 * pauses shortened from EMQX's 15 s to 50 ms.
 */
export function startTestEmqx(options: Partial<EmqxSimOptions> = {}): Promise<EmqxSim> {
  return startEmqxSim({
    hookToken: TEST_HOOK_TOKEN,
    apiKey: 'test-emqx',
    apiSecret: `test-emqx-${randomBytes(8).toString('hex')}`,
    timing: { resumeIntervalMs: 50, attemptTimeoutMs: 5000 },
    ...options,
  });
}

/** The config overrides that point an app at the simulation's REST API. */
export function emqxEnv(emqx: EmqxSim): Record<string, string> {
  return { EMQX_API_URL: emqx.url, EMQX_API_KEY: emqx.apiKey, EMQX_API_SECRET: emqx.apiSecret };
}

/** The service as apps that do not listen: each request goes to the next app in turn, as EMQX's pool spreads them over replicas. */
export function injectTransport(...apps: FastifyInstance[]): ServiceTransport {
  let next = 0;
  return async (request) => {
    const app = apps[next++ % apps.length] as FastifyInstance;
    const response = await app.inject({ method: request.method, url: request.url, headers: request.headers, payload: request.body });
    return { status: response.statusCode, contentType: String(response.headers['content-type'] ?? ''), body: response.body };
  };
}

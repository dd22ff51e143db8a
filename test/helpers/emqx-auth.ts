import type { FastifyInstance } from 'fastify';
import { TEST_HOOK_TOKEN } from './env.js';

/**
 * A CONNECT as EMQX asks about it (client id = username = the device), and
 * the `result` EMQX reads from the answer (`http_<status>` when there is no
 * 200 answer to read).
 */
export async function connectAs(app: FastifyInstance, deviceId: string, password: string, peerhost = '10.9.0.1'): Promise<string> {
  const response = await app.inject({
    method: 'POST',
    url: '/emqx/authn',
    headers: { authorization: `Bearer ${TEST_HOOK_TOKEN}` },
    payload: { clientid: deviceId, username: deviceId, password, peerhost },
  });
  return response.statusCode === 200 ? (response.json() as { result: string }).result : `http_${response.statusCode}`;
}

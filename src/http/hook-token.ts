import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Requires `Authorization: Bearer <EMQX_HOOK_TOKEN>` on every route of the
 * (encapsulated) plugin it is added to. Digests make the comparison constant
 * time whatever the presented length. A wrong token gets 401, which EMQX reads
 * as "ignore" for authn/authz (the client is then refused) and as a dropped
 * message for the rule action — so a misconfigured token is loud, not silent.
 */
export function requireHookToken(app: FastifyInstance, token: string) {
  const expected = digest(`Bearer ${token}`);
  app.addHook('onRequest', async (request, reply) => {
    const presented = request.headers.authorization;
    if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
      return reply.code(401).send({ result: 'ignore', reason: 'bad hook token' });
    }
  });
}

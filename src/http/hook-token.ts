import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { sha256 } from '../lib/digest.js';

/**
 * Requires `Authorization: Bearer <EMQX_HOOK_TOKEN>` on every route of the
 * (encapsulated) plugin it is added to. Digests make the comparison constant
 * time whatever the presented length. A wrong token gets 401, which EMQX reads
 * as "ignore" for authn/authz (the client is then refused) and as a dropped
 * message for the rule action — so a misconfigured token is loud, not silent.
 */
export function requireHookToken(app: FastifyInstance, token: string) {
  const expected = sha256(`Bearer ${token}`);
  // Callback style: this runs on every EMQX request, and an async hook costs a
  // promise per request for nothing.
  app.addHook('onRequest', (request, reply, done) => {
    const presented = request.headers.authorization;
    if (presented === undefined || !timingSafeEqual(sha256(presented), expected)) {
      reply.code(401).send({ result: 'ignore', reason: 'bad hook token' });
      return;
    }
    done();
  });
}

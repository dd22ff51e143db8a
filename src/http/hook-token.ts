import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

/**
 * Requires `Authorization: Bearer <EMQX_HOOK_TOKEN>` on every route of the
 * (encapsulated) plugin it is added to. The comparison is constant time in
 * the presented bytes; only a length difference answers early, and the
 * token's length is not the secret. (Digesting both sides would hide the
 * length too, at the price of a hash per EMQX request — the hottest path
 * there is.) A wrong token gets 401, which EMQX reads as "ignore" for
 * authn/authz (the client is then refused) and as a dropped message for the
 * rule action — so a misconfigured token is loud, not silent.
 */
export function requireHookToken(app: FastifyInstance, token: string) {
  const expected = Buffer.from(`Bearer ${token}`);
  const matches = (presented: string | undefined) =>
    presented !== undefined &&
    Buffer.byteLength(presented) === expected.length &&
    timingSafeEqual(Buffer.from(presented), expected);
  // Callback style: this runs on every EMQX request, and an async hook costs a
  // promise per request for nothing.
  app.addHook('onRequest', (request, reply, done) => {
    if (!matches(request.headers.authorization)) {
      reply.code(401).send({ result: 'ignore', reason: 'bad hook token' });
      return;
    }
    done();
  });
}

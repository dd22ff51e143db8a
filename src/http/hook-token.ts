import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { documentContext } from './openapi.js';

/** The answer to a request without the hook token; EMQX reads it as "ignore". */
export const badHookTokenSchema = z
  .object({ result: z.literal('ignore'), reason: z.string().meta({ examples: ['bad hook token'] }) })
  .meta({ id: 'EmqxIgnore' });

/**
 * Requires `Authorization: Bearer <token>` with one of `tokens` on every route
 * of the (encapsulated) plugin it is added to: EMQX_HOOK_TOKEN, and while a
 * rotation is under way EMQX_HOOK_TOKEN_PREVIOUS, so EMQX nodes still sending
 * the old token lose no event. A wrong token gets 401, which EMQX reads as
 * "ignore" for authn/authz (the client is then refused) and as a dropped
 * message for the rule action — so a misconfigured token is loud, not silent.
 */
export function requireHookToken(app: FastifyInstance, tokens: readonly string[]) {
  documentContext(app, {
    security: 'hookToken',
    answers: {
      401: {
        description: "No hook token, or a wrong one. EMQX reads it as `ignore` for authentication and authorization (the client is refused) and drops a rule action's message, so a wrong token is loud",
        body: badHookTokenSchema,
      },
    },
  });
  const expected = tokens.map((token) => `Bearer ${token}`);
  // Callback style, the hook's plain form in fastify.
  app.addHook('onRequest', (request, reply, done) => {
    const presented = request.headers.authorization;
    // Every token is compared, so the time does not tell which one matched.
    let accepted = false;
    for (const candidate of expected) accepted = sameSecret(presented, candidate) || accepted;
    if (!accepted) {
      reply.code(401).send({ result: 'ignore', reason: 'bad hook token' });
      return;
    }
    done();
  });
}

/**
 * Constant-time comparison with the expected secret: always walks the whole
 * expected value and never stops at the first difference, so the time
 * depends on the secret's length only. No allocation and no digest — this
 * runs on every CONNECT, subscribe, publish check and telemetry event.
 */
export function sameSecret(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  let difference = presented.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) {
    // Past the end of `presented` charCodeAt is NaN, which | and ^ treat as 0;
    // the length difference above already made the result false.
    difference |= presented.charCodeAt(i) ^ expected.charCodeAt(i);
  }
  return difference === 0;
}

import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { documentContext } from './openapi.js';

/** The answer to a request without the hook token; EMQX reads it as "ignore". */
export const badHookTokenSchema = z
  .object({ result: z.literal('ignore'), reason: z.string().meta({ examples: ['bad hook token'] }) })
  .meta({ id: 'EmqxIgnore' });

/**
 * Makes the (encapsulated) context the EMQX routes': it takes direct routes
 * only, and documents the hook token on each. They check the token themselves
 * (src/http/direct-routes.ts, hookTokenCheck), and a route that would not is
 * refused when it is registered.
 * EMQX_HOOK_TOKEN, and while a rotation is under way EMQX_HOOK_TOKEN_PREVIOUS,
 * so EMQX nodes still sending the old token lose no event. A wrong token gets
 * 401, which EMQX reads as "ignore" for authn/authz (the client is then
 * refused) and as a dropped message for the rule action — so a misconfigured
 * token is loud, not silent.
 */
export function hookTokenContext(app: FastifyInstance) {
  app.addHook('onRoute', (route) => {
    if (route.config?.servedDirectly !== true) throw new Error(`${String(route.method)} ${route.url} does not check the hook token: EMQX routes are direct routes`);
  });
  documentContext(app, {
    security: 'hookToken',
    answers: {
      401: {
        description: "No hook token, or a wrong one. EMQX reads it as `ignore` for authentication and authorization (the client is refused) and drops a rule action's message, so a wrong token is loud",
        body: badHookTokenSchema,
      },
    },
  });
}

/** What a request without the hook token is answered, with status 401. */
export const BAD_HOOK_TOKEN = { result: 'ignore', reason: 'bad hook token' } as const;

/**
 * True when an `Authorization` header is `Bearer <token>` for one of
 * `tokens`. Every token is compared, so the time does not tell which one
 * matched.
 */
export function hookTokenCheck(tokens: readonly string[]): (header: string | undefined) => boolean {
  const expected = tokens.map((token) => `Bearer ${token}`);
  return (presented) => {
    let accepted = false;
    for (const candidate of expected) accepted = sameSecret(presented, candidate) || accepted;
    return accepted;
  };
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

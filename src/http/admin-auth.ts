import type { FastifyInstance } from 'fastify';
import { UnauthorizedError } from '../lib/errors.js';
import type { Actor, Principal } from '../lib/actor.js';
import { documentContext } from './openapi.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated admin; set on every route of the admin API. */
    actor: Actor;
  }
}

/**
 * Requires `Authorization: Bearer <admin token>` on every route of the
 * (encapsulated) context it is added to, and records who is acting.
 */
export function requireAdmin(app: FastifyInstance, authenticate: (token: string) => Promise<Principal | null>) {
  documentContext(app, {
    security: 'adminToken',
    answers: {
      401: 'No admin token, or one that is unknown or revoked (`unauthorized`)',
      // Token lookups and every route behind them read Postgres.
      503: 'Postgres, Redis or Kafka cannot be reached (`unavailable`); the request may succeed later',
    },
  });
  app.decorateRequest('actor', null as unknown as Actor);
  app.addHook('onRequest', async (request) => {
    const header = request.headers.authorization;
    const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : '';
    const principal = token ? await authenticate(token) : null;
    if (!principal) throw new UnauthorizedError();
    request.actor = {
      tokenId: principal.tokenId,
      tenantId: principal.tenantId,
      requestId: String(request.id),
      clientRequestId: request.clientRequestId,
      sourceIp: request.ip,
    };
  });
}

import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from '../../http/zod-type-provider.js';
import { authnBodySchema, authnResponseSchema, authzBodySchema, authzResponseSchema, type AclRule, type AuthnResponse } from './auth-schemas.js';
import type { AuthnDecision, AuthnService } from './authn-service.js';
import { commandsTopic, telemetryTopic } from '../../lib/mqtt-topics.js';
import type { AuthzResult, AuthzService } from './authz-service.js';

export interface AuthRoutesOptions {
  authn: Pick<AuthnService, 'authenticate'>;
  authz: AuthzService;
}

/**
 * The device's whole ACL, sent with the allow so that EMQX checks it before
 * any authorization source; it ends in deny-all because an unmatched rule list
 * falls through to EMQX's sources (emqx-contract.md §A).
 */
export function deviceAcl(deviceId: string): AclRule[] {
  return [
    { permission: 'allow', action: 'publish', topic: telemetryTopic(deviceId) },
    { permission: 'allow', action: 'subscribe', topic: commandsTopic(deviceId) },
    { permission: 'deny', action: 'all', topic: '#' },
  ];
}

export function authnResponse(decision: AuthnDecision): AuthnResponse {
  if (decision.result !== 'allow') return { result: decision.result };
  return {
    result: 'allow',
    is_superuser: false,
    client_attrs: { tenant_id: decision.tenantId, device_id: decision.deviceId },
    acl: deviceAcl(decision.deviceId),
    ...(decision.expireAt !== null ? { expire_at: decision.expireAt } : {}),
  };
}

const quote = JSON.stringify;

/**
 * JSON text of an authn answer, identical to JSON.stringify(response) (a test
 * holds it to that) but written field by field: this runs on every CONNECT,
 * and a reconnect storm is tens of thousands of them. The answer is built in
 * this module from typed fields, never from a stored record, so nothing needs
 * filtering on the way out.
 */
export function stringifyAuthnResponse(response: AuthnResponse): string {
  if (response.result !== 'allow') return `{"result":${quote(response.result)}}`;
  const { client_attrs: attrs, acl } = response;
  let rules = '';
  for (const rule of acl) {
    rules += `${rules === '' ? '' : ','}{"permission":${quote(rule.permission)},"action":${quote(rule.action)},"topic":${quote(rule.topic)}}`;
  }
  const expiry = response.expire_at === undefined ? '' : `,"expire_at":${quote(response.expire_at)}`;
  return (
    `{"result":"allow","is_superuser":false,"client_attrs":{"tenant_id":${quote(attrs.tenant_id)},"device_id":${quote(attrs.device_id)}},` +
    `"acl":[${rules}]${expiry}}`
  );
}

const authzAnswers: Record<AuthzResult, string> = {
  allow: '{"result":"allow"}',
  deny: '{"result":"deny"}',
  ignore: '{"result":"ignore"}',
};

/** The route serializers (the schemas stay the declared shape; the contract tests hold answers to them). */
const authnSerializer = () => (data: unknown) => stringifyAuthnResponse(data as AuthnResponse);
const authzSerializer = () => (data: unknown) => authzAnswers[(data as { result: AuthzResult }).result];

export const authRoutes: FastifyPluginAsync<AuthRoutesOptions> = async (app, options) => {
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const { authn, authz } = options;

  // logLevel warn: one info line per CONNECT would swamp the log in a reconnect storm.
  routes.post(
    '/emqx/authn',
    { schema: { body: authnBodySchema, response: { 200: authnResponseSchema } }, serializerCompiler: authnSerializer, logLevel: 'warn' },
    // Not async: a verification found in memory is answered without a promise.
    (request) => {
      const decision = authn.authenticate(request.body);
      return decision instanceof Promise ? decision.then(authnResponse) : authnResponse(decision);
    },
  );

  routes.post(
    '/emqx/authz',
    { schema: { body: authzBodySchema, response: { 200: authzResponseSchema } }, serializerCompiler: authzSerializer, logLevel: 'warn' },
    // Not async: a device found in memory is answered without a promise.
    (request) => {
      const result = authz.authorize(request.body);
      return typeof result === 'string' ? { result } : result.then((answer) => ({ result: answer }));
    },
  );
};

import type { FastifyPluginAsync } from 'fastify';
import { addDirectRoute, jsonRoute, type DirectRoutes } from '../../http/direct-routes.js';
import type { UnusableBodyCounter } from './auth-metrics.js';
import { authnBodySchema, authnResponseSchema, authzBodySchema, authzResponseSchema, type AclRule, type AuthnResponse } from './auth-schemas.js';
import type { AuthnDecision, AuthnService } from './authn-service.js';
import { andThen } from '../../lib/and-then.js';
import { commandRepliesTopic, commandsTopic, telemetryTopic } from '../../lib/mqtt-topics.js';
import type { AuthzResult, AuthzService } from './authz-service.js';
import type { ServiceIdentity } from './service-identity.js';

export interface AuthRoutesOptions {
  /** Where the two routes are served, ahead of Fastify (src/http/direct-routes.ts). */
  direct: DirectRoutes;
  authn: Pick<AuthnService, 'authenticate'>;
  authz: AuthzService;
  /** Counts the bodies refused here, beside the services' own answers. */
  unusableBodies: UnusableBodyCounter;
  /** COMMAND_REPLIES=enabled: devices may also publish their command replies. */
  commandReplies?: boolean;
  /** The telemetry subscriber's identity (INGEST_MQTT_URL); absent without it. */
  serviceIdentity?: ServiceIdentity | null;
}

/**
 * The device's whole ACL, sent with the allow so that EMQX checks it before
 * any authorization source; it ends in deny-all because an unmatched rule list
 * falls through to EMQX's sources (docs/emqx-contract.md §A).
 */
export function deviceAcl(deviceId: string, options: { commandReplies?: boolean } = {}): AclRule[] {
  return [
    { permission: 'allow', action: 'publish', topic: telemetryTopic(deviceId) },
    ...(options.commandReplies ? [{ permission: 'allow', action: 'publish', topic: commandRepliesTopic(deviceId) } as const] : []),
    { permission: 'allow', action: 'subscribe', topic: commandsTopic(deviceId) },
    { permission: 'deny', action: 'all', topic: '#' },
  ];
}

export function authnResponse(decision: AuthnDecision, options: { commandReplies?: boolean } = {}): AuthnResponse {
  if (decision.result !== 'allow') return { result: decision.result };
  return {
    result: 'allow',
    is_superuser: false,
    client_attrs: { tenant_id: decision.tenantId, device_id: decision.deviceId },
    acl: deviceAcl(decision.deviceId, options),
    ...(decision.expireAt !== null ? { expire_at: decision.expireAt } : {}),
  };
}

const EXAMPLE_DEVICE = '0b7f3c1e-5d2a-4c8e-9f1a-2b3c4d5e6f70';

const answered = (result: AuthzResult) => ({ result });

const AUTHN_DESCRIPTION = `Called by EMQX's HTTP authenticator with the body template the service ships. Allowed only when the client id equals the username, it is the lowercase UUID of an existing, enabled device, and the password is one of its usable API keys (not revoked, not past \`not_after\`) or its PSK. With \`DUPLICATE_CLIENT_POLICY=reject\`, a CONNECT while the device has a live session is denied too.

The allow carries \`client_attrs\`, the device's ACL ending in deny-all, and, with a key that has \`not_after\`, \`expire_at\`. Every refusal is \`200 {"result":"deny"}\`.

With \`INGEST_MQTT_URL\` set, the username \`INGEST_MQTT_USERNAME\` is the service's own telemetry subscriber: allowed with \`INGEST_MQTT_PASSWORD\` only, never as a superuser and without \`client_attrs\`, with an ACL that allows subscribing to \`$share/{INGEST_MQTT_SHARE_GROUP}/devices/+/telemetry\` and denies everything else. \`ignore\` means the service cannot decide now (Postgres or Redis cannot be reached, the hashing queue is full, EMQX cannot be asked about a duplicate session), and EMQX then refuses the client.

A body this route cannot use (over 64 KiB, not JSON, another content type, not this shape) is also \`200 {"result":"deny"}\`, never a 4xx, which EMQX would log as a failed query.`;

const AUTHZ_DESCRIPTION = `Called by EMQX's HTTP authorization source. Allows exactly a device publishing to \`devices/{own id}/telemetry\` (and, with \`COMMAND_REPLIES=enabled\`, \`devices/{own id}/command-replies\`) and subscribing to \`devices/{own id}/commands\`; everything else (wildcard filters, other devices' topics, \`$SYS/...\`, unknown or disabled devices) is denied. The service's telemetry subscriber (\`INGEST_MQTT_USERNAME\`) may only subscribe to \`$share/{INGEST_MQTT_SHARE_GROUP}/devices/+/telemetry\`. Answered from the devices held in memory; \`ignore\` only when the device is not held and Postgres cannot be reached.

A body this route cannot use (over 64 KiB, not JSON, another content type, not this shape) is \`200 {"result":"deny"}\`, never a 4xx.`;

/**
 * Room for the CONNECTs and topic checks of real devices. MQTT lets a client
 * send up to 64 KiB in each of client id, username, password and topic, so a
 * body may be larger: only its first 64 KiB are kept, the rest is dropped as
 * it arrives, and it is answered deny, as any body these routes cannot use.
 */
const AUTH_BODY_LIMIT_BYTES = 64 * 1024;

/** What EMQX reads from a body these routes cannot use: never a 4xx, which it would log as a failed query. */
const DENY = { result: 'deny' } as const;

/**
 * Both routes are served by the direct routes; Fastify holds their schemas
 * (the OpenAPI document) and hands over what it receives for them. Their
 * answers are built field by field from a decision (authnResponse,
 * `{ result }`), never from a stored row that could carry a hash, so they are
 * written as built. Errors are logged at warn and above only: one info line
 * per CONNECT would swamp the log in a reconnect storm.
 */
export const authRoutes: FastifyPluginAsync<AuthRoutesOptions> = async (app, options) => {
  const { authn, authz, direct, unusableBodies } = options;
  const serviceIdentity = options.serviceIdentity ?? null;
  const aclOptions = { commandReplies: options.commandReplies ?? false };
  const respond = (decision: AuthnDecision) => authnResponse(decision, aclOptions);

  addDirectRoute(
    app,
    direct,
    jsonRoute({
      path: '/emqx/authn',
      body: authnBodySchema,
      bodyLimit: AUTH_BODY_LIMIT_BYTES,
      // Not async, like authz: a verification held in memory is answered without
      // a promise. Measured against the async handler and service (npm run bench,
      // BENCH_COMPARE, cached authn): CPU per request 14.4 % and 18.2 % lower in
      // two runs of 10 and 12 paired rounds, 5.6 % higher in a third of 10.
      answer: (body) =>
        serviceIdentity?.claims(body.username) ? serviceIdentity.authenticate(body.password) : andThen(authn.authenticate(body), respond),
      refusal: DENY,
      refused: unusableBodies.authn,
    }),
    {
      tags: ['emqx'],
      operationId: 'postEmqxAuthn',
      summary: 'EMQX HTTP authentication: may this client connect?',
      description: AUTHN_DESCRIPTION,
      body: authnBodySchema,
      response: { 200: authnResponseSchema },
      answers: {
        200: {
          description: 'The decision, always with status 200: any other status means "ignore" to EMQX',
          examples: {
            allow: { value: authnResponse({ result: 'allow', tenantId: 'acme', deviceId: EXAMPLE_DEVICE, expireAt: 1798761600, via: 'digest' }) },
            deny: { value: DENY },
          },
        },
      },
    },
  );

  addDirectRoute(
    app,
    direct,
    jsonRoute({
      path: '/emqx/authz',
      body: authzBodySchema,
      bodyLimit: AUTH_BODY_LIMIT_BYTES,
      // Not async: a device found in memory is answered without a promise.
      // Measured against an async handler and service: paired median +9.5 %
      // req/s on /emqx/authz (npm run bench, BENCH_COMPARE, 10 rounds).
      answer: (body) => andThen(authz.authorize(body), answered),
      refusal: DENY,
      refused: unusableBodies.authz,
    }),
    {
      tags: ['emqx'],
      operationId: 'postEmqxAuthz',
      summary: 'EMQX HTTP authorization: may this client use this topic?',
      description: AUTHZ_DESCRIPTION,
      body: authzBodySchema,
      response: { 200: authzResponseSchema },
      answers: { 200: { description: 'The decision, always with status 200', examples: { allow: { value: { result: 'allow' } } } } },
    },
  );
};

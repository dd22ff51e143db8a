import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { authnResponse, stringifyAuthnResponse } from '../../../src/modules/emqx-auth/auth-routes.js';
import { authnResponseSchema } from '../../../src/modules/emqx-auth/auth-schemas.js';
import type { AuthnDecision } from '../../../src/modules/emqx-auth/authn-service.js';

describe('authn answer serialization', () => {
  const deviceId = randomUUID();
  const decisions: [string, AuthnDecision][] = [
    ['allow without expiry', { result: 'allow', deviceId, tenantId: 'acme', expireAt: null, via: 'memory' }],
    ['allow with expiry', { result: 'allow', deviceId, tenantId: 'acme_2-x', expireAt: 1_900_000_000, via: 'argon2' }],
    ['deny', { result: 'deny', reason: 'wrong_secret' }],
    ['ignore', { result: 'ignore', reason: 'redis_unavailable' }],
  ];

  for (const [what, decision] of decisions) {
    it(`writes exactly what JSON.stringify writes: ${what}`, () => {
      const response = authnResponse(decision);
      const text = stringifyAuthnResponse(response);
      assert.equal(text, JSON.stringify(response));
      assert.ok(authnResponseSchema.safeParse(JSON.parse(text)).success);
    });
  }

  it('escapes what it writes', () => {
    const text = stringifyAuthnResponse({
      result: 'allow',
      is_superuser: false,
      client_attrs: { tenant_id: 'a"b\\c', device_id: '\u2028x' },
      acl: [{ permission: 'allow', action: 'publish', topic: 'a"}],"x":{"' }],
    });
    const parsed = JSON.parse(text) as { client_attrs: { tenant_id: string }; acl: { topic: string }[] };
    assert.equal(parsed.client_attrs.tenant_id, 'a"b\\c');
    assert.equal(parsed.acl[0]?.topic, 'a"}],"x":{"');
    assert.deepEqual(Object.keys(parsed), ['result', 'is_superuser', 'client_attrs', 'acl']);
  });

  it('never carries the reason of a refusal', () => {
    assert.equal(stringifyAuthnResponse(authnResponse({ result: 'deny', reason: 'key_revoked' })), '{"result":"deny"}');
  });
});

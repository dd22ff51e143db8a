import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { authnResponse } from '../../../src/modules/emqx-auth/auth-routes.js';
import { authnResponseSchema } from '../../../src/modules/emqx-auth/auth-schemas.js';
import type { AuthnDecision } from '../../../src/modules/emqx-auth/authn-service.js';

describe('authn answers', () => {
  const deviceId = randomUUID();

  it('allows with the tenant, the device, its ACL ending in deny-all and no superuser', () => {
    const decision: AuthnDecision = { result: 'allow', deviceId, tenantId: 'acme', expireAt: 1_900_000_000, via: 'argon2' };
    const answer = authnResponse(decision);
    assert.deepEqual(answer, {
      result: 'allow',
      is_superuser: false,
      client_attrs: { tenant_id: 'acme', device_id: deviceId },
      acl: [
        { permission: 'allow', action: 'publish', topic: `devices/${deviceId}/telemetry` },
        { permission: 'allow', action: 'subscribe', topic: `devices/${deviceId}/commands` },
        { permission: 'deny', action: 'all', topic: '#' },
      ],
      expire_at: 1_900_000_000,
    });
    assert.ok(authnResponseSchema.safeParse(answer).success);
  });

  it('carries no expire_at for a key without expiry', () => {
    assert.ok(!('expire_at' in authnResponse({ result: 'allow', deviceId, tenantId: 'acme', expireAt: null, via: 'memory' })));
  });

  it('never carries the reason of a refusal', () => {
    assert.deepEqual(authnResponse({ result: 'deny', reason: 'key_revoked' }), { result: 'deny' });
    assert.deepEqual(authnResponse({ result: 'ignore', reason: 'redis_unavailable' }), { result: 'ignore' });
  });
});

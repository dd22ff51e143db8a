import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHmacSha256 } from '../../src/lib/digest.js';

describe('createHmacSha256', () => {
  it('gives the RFC 4231 test vector (test case 2), base64url', () => {
    // HMAC-SHA-256("Jefe", "what do ya want for nothing?") = 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843
    assert.equal(createHmacSha256('Jefe')('what do ya want for nothing?'), 'W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM');
  });

  it('gives different digests for different secrets and for different messages', () => {
    assert.notEqual(createHmacSha256('a-secret')('m'), createHmacSha256('b-secret')('m'));
    assert.notEqual(createHmacSha256('a-secret')('m'), createHmacSha256('a-secret')('n'));
  });
});

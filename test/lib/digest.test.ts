import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { createHmacSha256 } from '../../src/lib/digest.js';

describe('createHmacSha256', () => {
  const secrets = [
    'cache-secret-0123456789abcdefghijklmnopqrstuvwxyz',
    'x'.repeat(64),
    'y'.repeat(65),
    'short',
    'sécret-with-non-ascii-ünïcode',
    '\u0000\u007f control characters',
  ];
  const messages = ['', '6f1c2a8e-1f2b-4c3d-9e8f-0a1b2c3d4e5f\u0000sk_live_abc_def', 'ünïcode \u2028 ☃', 'z'.repeat(5000)];

  for (const secret of secrets) {
    it(`equals createHmac for a secret of ${Buffer.byteLength(secret)} bytes${/[^\x20-\x7e]/.test(secret) ? ' (not printable ASCII)' : ''}`, () => {
      const hmac = createHmacSha256(secret);
      for (const message of messages) {
        assert.equal(hmac(message), createHmac('sha256', secret).update(message).digest('base64url'), JSON.stringify(message.slice(0, 20)));
      }
    });
  }

  it('gives different digests for different secrets', () => {
    assert.notEqual(createHmacSha256('a-secret')('m'), createHmacSha256('b-secret')('m'));
  });
});

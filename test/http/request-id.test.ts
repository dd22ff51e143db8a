import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientRequestIdOf, generateRequestId } from '../../src/http/request-id.js';

describe('request ids', () => {
  it('generates a different id for every request: 96 random bits of the process, then a counter', () => {
    const ids = Array.from({ length: 1000 }, generateRequestId);
    assert.equal(new Set(ids).size, ids.length);
    const prefixes = new Set(ids.map((id) => id.split('-')[0]));
    assert.equal(prefixes.size, 1);
    for (const id of ids) assert.match(id, /^[0-9a-f]{24}-[0-9a-z]+$/);
  });

  it('keeps a client id of at most 128 printable ASCII characters', () => {
    for (const kept of ['req-1', 'a', 'x'.repeat(128), 'trace=4bf92f35 span:00f067aa', '~!@#$%^&*()_+{}|:"<>?']) {
      assert.equal(clientRequestIdOf(kept), kept);
    }
  });

  it('drops anything else rather than cutting or cleaning it', () => {
    for (const dropped of [undefined, '', '   ', 'x'.repeat(129), 'a\nb', 'a\u0000b', 'a\u007fb', 'caf\u00e9', 'id\u202e', ['a', 'b']]) {
      assert.equal(clientRequestIdOf(dropped), null, JSON.stringify(dropped));
    }
  });
});

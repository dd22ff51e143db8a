import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sameSecret } from '../../src/http/hook-token.js';

describe('sameSecret', () => {
  const expected = 'Bearer hook-token-0123456789';

  it('accepts exactly the expected value', () => {
    assert.equal(sameSecret(expected, expected), true);
    assert.equal(sameSecret(['Bearer hook-token-', '0123456789'].join(''), expected), true);
  });

  it('refuses anything else', () => {
    const refused = [
      undefined,
      '',
      'Bearer',
      expected.slice(0, -1),
      `${expected}0`,
      `${expected.slice(0, -1)}8`,
      `x${expected.slice(1)}`,
      expected.toUpperCase(),
      `${expected}\u0000`,
      'Bearer hook-token-012345678\u0439',
    ];
    for (const presented of refused) assert.equal(sameSecret(presented, expected), false, JSON.stringify(presented));
  });

  it('refuses a value whose characters differ only beyond the low byte', () => {
    assert.equal(sameSecret('\u0141', 'A'), false);
    assert.equal(sameSecret('A', '\u0141'), false);
  });
});

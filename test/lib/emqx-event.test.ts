import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isEmqxEvent } from '../../src/lib/emqx-event.js';

describe('isEmqxEvent', () => {
  it('takes a JSON object naming its event, whatever else it holds', () => {
    assert.ok(isEmqxEvent({ event: 'message.publish', clientid: 'x', payload: '{}' }));
    assert.ok(isEmqxEvent({ event: 'e'.repeat(64) }));
  });

  it('refuses anything else', () => {
    for (const value of [null, undefined, 'message.publish', 42, [], [{ event: 'message.publish' }], {}, { event: '' }, { event: 'e'.repeat(65) }, { event: 7 }]) {
      assert.equal(isEmqxEvent(value), false, JSON.stringify(value));
    }
  });
});

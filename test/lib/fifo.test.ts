import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Fifo } from '../../src/lib/fifo.js';

describe('Fifo', () => {
  it('gives items back in the order they came, across its compactions', () => {
    const fifo = new Fifo<number>();
    const out: number[] = [];
    let next = 0;
    // Interleaved pushes and shifts keep thousands waiting while the head moves past 1,024 several times.
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 300; i++) fifo.push(next++);
      for (let i = 0; i < 250; i++) out.push(fifo.shift() as number);
      assert.equal(fifo.length, next - out.length);
      assert.equal(fifo.peek(), out.length);
    }
    while (fifo.length > 0) out.push(fifo.shift() as number);
    assert.deepEqual(out, Array.from({ length: next }, (_, i) => i));
    assert.equal(fifo.shift(), undefined);
    assert.equal(fifo.peek(), undefined);
  });

  it('starts over cleanly once emptied', () => {
    const fifo = new Fifo<string>();
    fifo.push('a');
    assert.equal(fifo.shift(), 'a');
    assert.equal(fifo.length, 0);
    fifo.push('b');
    fifo.push('c');
    assert.equal(fifo.peek(), 'b');
    assert.equal(fifo.shift(), 'b');
    assert.equal(fifo.shift(), 'c');
    assert.equal(fifo.length, 0);
  });
});

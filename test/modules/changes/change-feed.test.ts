import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createChangeFeed } from '../../../src/modules/changes/change-feed.js';
import type { LoggedChange } from '../../../src/modules/changes/change-repository.js';

const silent = { warn: () => undefined, info: () => undefined };
const change = (position: number): LoggedChange => ({
  position: String(position),
  kind: 'key_revoked',
  device_id: `device-${position}`,
  tenant_id: 'acme',
  at: new Date(0).toISOString(),
});

/** A change log in memory, read the way the repository reads Postgres. */
function logOf(positions: number[]) {
  const entries = positions.map(change);
  return {
    entries,
    head: async () => String(entries.at(-1)?.position ?? '0'),
    readAfter: async (position: string, limit: number) => entries.filter((entry) => BigInt(entry.position) > BigInt(position)).slice(0, limit),
  };
}

describe('the change feed', () => {
  it('starts from the head, dropping what it holds, then applies each later change once, in order', async () => {
    const log = logOf([1, 2, 3]);
    const applied: string[] = [];
    let resets = 0;
    const feed = createChangeFeed({ ...log, apply: (c) => applied.push(c.position), reset: () => resets++, clock: Date.now, retentionMs: 86_400_000, log: silent });
    await feed.catchUp();
    assert.deepEqual([applied, resets], [[], 1]);
    log.entries.push(change(4), change(5));
    await feed.catchUp();
    await feed.catchUp();
    assert.deepEqual(applied, ['4', '5']);
    assert.equal(resets, 1);
  });

  it('reads more than one batch', async () => {
    const log = logOf([0]);
    const applied: string[] = [];
    const feed = createChangeFeed({ ...log, apply: (c) => applied.push(c.position), reset: () => undefined, clock: Date.now, retentionMs: 86_400_000, log: silent });
    await feed.catchUp();
    for (let position = 1; position <= 1200; position++) log.entries.push(change(position));
    await feed.catchUp();
    assert.equal(applied.length, 1200);
    assert.equal(applied.at(-1), '1200');
  });

  it('drops everything when positions jump (changes pruned unread), or when it has not read for too long', async () => {
    const log = logOf([1]);
    let resets = 0;
    let now = 0;
    const feed = createChangeFeed({ ...log, apply: () => undefined, reset: () => resets++, clock: () => now, retentionMs: 10_000, log: silent });
    await feed.catchUp();
    log.entries.push(change(5));
    await feed.catchUp();
    assert.equal(resets, 2, 'positions 2 to 4 were never seen');
    now += 6000;
    await feed.catchUp();
    assert.equal(resets, 3, 'more than half the retention without a read');
  });

  it('a call made while a read is under way gets a read that starts after it', async () => {
    const log = logOf([1]);
    const applied: string[] = [];
    let release: () => void = () => undefined;
    let gate: Promise<void> | null = null;
    const feed = createChangeFeed({
      head: log.head,
      async readAfter(position, limit) {
        const answer = await log.readAfter(position, limit);
        if (gate) await gate;
        return answer;
      },
      apply: (c) => applied.push(c.position),
      reset: () => undefined,
      clock: Date.now,
      retentionMs: 86_400_000,
      log: silent,
    });
    await feed.catchUp();
    gate = new Promise((resolve) => (release = resolve));
    const under = feed.catchUp();
    log.entries.push(change(2));
    const after = feed.catchUp();
    release();
    gate = null;
    await Promise.all([under, after]);
    assert.deepEqual(applied, ['2']);
  });
});

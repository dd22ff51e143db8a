import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { testKafka } from '../helpers/kafka.js';

// kafkajs 2.2.4's request queue scheduled a check of its pending requests
// after every response even when none was pending: a negative delay, run by
// Node after 1 ms and rescheduled from there for as long as the connection
// lived, and a TimeoutNegativeWarning on Node 24. patches/kafkajs+2.2.4.patch
// schedules the check only while a request waits.
describe('kafkajs request queue (patched)', () => {
  it('sets no timer while no request waits, and Node prints no TimeoutNegativeWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    const admin = testKafka('dlm-test-queue').admin();
    const realSetTimeout = globalThis.setTimeout;
    let timers = 0;
    try {
      await admin.connect();
      await admin.listTopics();
      // Counts the timers kafkajs sets while the connection is idle.
      globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
        timers += 1;
        return realSetTimeout(...args);
      }) as typeof setTimeout;
      await new Promise((resolve) => realSetTimeout(resolve, 300));
    } finally {
      globalThis.setTimeout = realSetTimeout;
      await admin.disconnect();
      await sleep(10);
      process.off('warning', onWarning);
    }
    // Unpatched: one every ~1 ms per connection.
    assert.ok(timers < 10, `${timers} timers in 300 ms of an idle connection`);
    assert.deepEqual(warnings.filter((name) => name === 'TimeoutNegativeWarning'), []);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatReport, runSoak } from '../../soak/soak.js';

// Under test/fault/: run alone, after every other test file (scripts/run-tests.mjs).
describe('the fault soak, short', () => {
  it('loses nothing, leaves no command unacked, allows nothing wrongly and answers no 500 while Kafka, Redis and Postgres restart in turn', { timeout: 10 * 60_000 }, async () => {
    const report = await runSoak({ durationS: 45, devices: 20, outageS: 5, log: () => undefined });
    const table = formatReport(report);
    assert.deepEqual(report.failures, [], table);
    assert.equal(report.faults.length, 3, table);
    assert.ok(report.telemetry.acknowledged > 0, table);
    assert.ok(report.commands.created > 0, table);
  });
});

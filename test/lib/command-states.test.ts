import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMMAND_EVENTS, COMMAND_STATES, isFinished, nextState, type CommandEvent, type CommandState } from '../../src/lib/command-states.js';

/**
 * Every event (row) applied to a command in every state (column): the state
 * it moves to, or `-` for no change. Read against the README's Commands section:
 * queued → sent → delivered → acked → succeeded | failed | timed_out (replies),
 * expired or dropped before the ack, canceled while queued; a step may be
 * skipped, a state never left backwards or once final.
 */
const TABLE = `
                        queued    sent      delivered acked     expired   dropped   canceled  succeeded failed    timed_out
published               sent      -         -         -         -         -         -         -         -         -
publish_refused         dropped   -         -         -         -         -         -         -         -         -
expired_before_publish  expired   -         -         -         -         -         -         -         -         -
delivered               delivered delivered -         -         -         -         -         -         -         -
acked                   acked     acked     acked     -         -         -         -         -         -         -
expired_in_emqx         expired   expired   expired   -         -         -         -         -         -         -
dropped_by_emqx         dropped   dropped   dropped   -         -         -         -         -         -         -
expired_by_sweeper      expired   expired   expired   -         -         -         -         -         -         -
canceled                canceled  -         -         -         -         -         -         -         -         -
reply_ok                succeeded succeeded succeeded succeeded -         -         -         -         -         -
reply_error             failed    failed    failed    failed    -         -         -         -         -         -
reply_timed_out         -         -         -         timed_out -         -         -         -         -         -
device_deleted          canceled  dropped   dropped   -         -         -         -         -         -         -
session_lost            -         queued    queued    -         -         -         -         -         -         -
`;

/**
 * An \`expired\` the service decided, by its reason (columns), against the
 * events that prove the device got the command (rows); EMQX's own expiry
 * (\`expired_in_emqx\`) is in the table above, and nothing moves it.
 */
const SERVICE_EXPIRY = `
                        not_sent  not_delivered not_acked expired_in_emqx
delivered               delivered delivered     -         -
acked                   acked     acked         acked     -
reply_ok                succeeded succeeded     succeeded -
reply_error             failed    failed        failed    -
`;

/** Whether a command in each state is finished (finished_at set), for a command that waits for a reply and one that does not. */
const FINISHED = `
                        queued    sent      delivered acked     expired   dropped   canceled  succeeded failed    timed_out
waits for a reply       no        no        no        no        yes       yes       yes       yes       yes       yes
waits for none          no        no        no        yes       yes       yes       yes       yes       yes       yes
`;

/** The table's rows as [label, one cell per state], its header checked against the states. */
function rowsOf(table: string): [string, string[]][] {
  const [header, ...rows] = table.trim().split('\n');
  assert.deepEqual(header?.trim().split(/\s+/), [...COMMAND_STATES], 'one column per state, in order');
  return rows.map((row) => {
    const words = row.trim().split(/\s+/);
    const label = words.slice(0, -COMMAND_STATES.length).join(' ');
    return [label, words.slice(-COMMAND_STATES.length)];
  });
}

describe('the command state machine', () => {
  const rows = rowsOf(TABLE);

  it('the table has one row per event', () => {
    assert.deepEqual(
      rows.map(([event]) => event),
      [...COMMAND_EVENTS],
    );
  });

  for (const [event, cells] of rows) {
    it(`${event}: from each state`, () => {
      const actual = Object.fromEntries(COMMAND_STATES.map((state) => [state, nextState(state, event as CommandEvent) ?? '-']));
      const expected = Object.fromEntries(COMMAND_STATES.map((state, index) => [state, cells[index]]));
      assert.deepEqual(actual, expected);
    });
  }

  it('whether each state is finished', () => {
    const [withReply, withoutReply] = rowsOf(FINISHED);
    const yes = (cells: string[]) => Object.fromEntries(COMMAND_STATES.map((state, index) => [state, cells[index] === 'yes']));
    const finished = (waitsForReply: boolean) => Object.fromEntries(COMMAND_STATES.map((state) => [state, isFinished(state, waitsForReply)]));
    assert.deepEqual(finished(true), yes(withReply![1]));
    assert.deepEqual(finished(false), yes(withoutReply![1]));
  });

  it("evidence of delivery wins over an expiry the service decided, never over EMQX's", () => {
    const [header, ...rows] = SERVICE_EXPIRY.trim().split('\n');
    const reasons = header?.trim().split(/\s+/) ?? [];
    for (const row of rows) {
      const [event, ...cells] = row.trim().split(/\s+/);
      const actual = Object.fromEntries(reasons.map((reason) => [reason, nextState('expired', event as CommandEvent, reason) ?? '-']));
      assert.deepEqual(actual, Object.fromEntries(reasons.map((reason, index) => [reason, cells[index]])), event);
    }
    // Every other event leaves a service expiry as it is.
    for (const event of COMMAND_EVENTS.filter((name) => !['delivered', 'acked', 'reply_ok', 'reply_error'].includes(name))) {
      for (const reason of reasons) assert.equal(nextState('expired', event, reason), null, `${event} on expired/${reason}`);
    }
  });

  it('only moves forward but for a lost session: never back otherwise, never out of a final state', () => {
    const order: readonly CommandState[] = ['queued', 'sent', 'delivered', 'acked'];
    for (const state of COMMAND_STATES) {
      for (const event of COMMAND_EVENTS) {
        const next = nextState(state, event);
        if (next === null || event === 'session_lost') continue;
        assert.ok(!isFinished(state, true), `${event} moves ${state}, which is final`);
        assert.ok(!order.includes(next) || order.indexOf(next) > order.indexOf(state), `${event}: ${state} → ${next}`);
      }
    }
  });
});

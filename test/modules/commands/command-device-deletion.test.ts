import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { withTransaction } from '../../../src/infra/transaction.js';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';
import { newCommand } from '../../helpers/commands.js';
import { createTestDatabase, type TestDatabase } from '../../helpers/database.js';
import { uniqueTag } from '../../helpers/env.js';

describe("a deleted device's commands, in Postgres", () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  const commands = createCommandRepository();

  before(async () => {
    db = await createTestDatabase(uniqueTag());
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    await pool.query(`INSERT INTO tenants (id, name) VALUES ('acme', 'Acme')`);
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  /** A command of the device, put straight into `state` (as its events would have). */
  async function command(deviceId: string, state: string, options: { responseTimeoutS?: number; finished?: boolean } = {}) {
    const at = new Date();
    const outcome = await commands.create(
      pool,
      newCommand(deviceId, { tenantId: 'acme', name: state, responseTimeoutS: options.responseTimeoutS ?? null, at, maxUnfinished: 100 }),
    );
    assert.equal(outcome.kind, 'created');
    const id = outcome.kind === 'created' ? outcome.command.id : '';
    await pool.query(`UPDATE commands SET state = $2, finished_at = CASE WHEN $3 THEN $4::timestamptz END WHERE id = $1`, [id, state, options.finished ?? false, at]);
    return id;
  }

  it('cancels what was queued and drops what EMQX held, one status record each, then deletes every command of the device', async () => {
    const deviceId = (await pool.query<{ id: string }>(`INSERT INTO devices (id, tenant_id, name) VALUES (gen_random_uuid(), 'acme', 'd') RETURNING id`)).rows[0]!.id;
    const ids = {
      queued: await command(deviceId, 'queued'),
      sent: await command(deviceId, 'sent'),
      delivered: await command(deviceId, 'delivered'),
      awaitingReply: await command(deviceId, 'acked', { responseTimeoutS: 60 }),
      acked: await command(deviceId, 'acked', { finished: true }),
      succeeded: await command(deviceId, 'succeeded', { responseTimeoutS: 60, finished: true }),
    };
    await pool.query('DELETE FROM command_status_outbox');

    const ended = await withTransaction(pool, (client) => commands.purgeDevices(client, [deviceId], new Date()));
    const summary = (row: { id: string; state: string; previous_state: string | null; reason: string | null }) => [row.id, row.previous_state, row.state, row.reason];
    const expected = [
      [ids.queued, 'queued', 'canceled', 'device_deleted'],
      [ids.sent, 'sent', 'dropped', 'device_deleted'],
      [ids.delivered, 'delivered', 'dropped', 'device_deleted'],
    ];
    assert.deepEqual(ended.map(summary), expected, 'the acked command waiting for its reply is not ended');
    assert.ok(ended.every((row) => row.finished_at !== null));

    const { rows: records } = await pool.query('SELECT command_id AS id, previous_state, state, reason FROM command_status_outbox ORDER BY command_status_outbox.id');
    const sortedFrom = (list: unknown[][], start: number) => [...list.slice(0, start), ...list.slice(start).sort((a, b) => String(a[0]).localeCompare(String(b[0])))];
    // The cancel is recorded before the drops; the drops, made in one statement, in no particular order.
    assert.deepEqual(sortedFrom(records.map(summary), 1), sortedFrom(expected, 1));
    assert.equal((await pool.query('SELECT count(*)::int AS n FROM commands WHERE device_id = $1', [deviceId])).rows[0].n, 0);
  });
});

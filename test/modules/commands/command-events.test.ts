import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Pool } from 'pg';
import { Registry } from 'prom-client';
import type { EmqxEvent } from '../../../src/lib/emqx-event.js';
import { createCommandEventHandlers } from '../../../src/modules/commands/command-events.js';
import { createCommandMetrics } from '../../../src/modules/commands/command-metrics.js';
import { createCommandRepository } from '../../../src/modules/commands/command-repository.js';

/** Postgres as it looks while it is down: every query fails. */
const downPool = { query: () => Promise.reject(new Error('connect ECONNREFUSED')) } as unknown as Pool;

function handlers() {
  const metrics = createCommandMetrics(new Registry(), async () => ({ unfinished: {}, outbox: 0 }));
  const created = createCommandEventHandlers({
    pool: downPool,
    commands: createCommandRepository(),
    clock: Date.now,
    metrics,
    changed: () => undefined,
    subscribed: () => undefined,
  });
  return { ...created.delivery, ...created.reply };
}

describe('command event handlers', () => {
  const device = randomUUID();
  const commandEvent = (event: string, extra: Record<string, unknown> = {}): EmqxEvent => ({
    event,
    id: 'A1'.repeat(16),
    clientid: device,
    username: device,
    topic: `devices/${device}/commands`,
    pub_props: { 'User-Property': { command_id: randomUUID() } },
    ...extra,
  });

  it('answer 503 (EMQX retries) while Postgres is down, never an error', async () => {
    const all = handlers();
    const events: EmqxEvent[] = [
      commandEvent('message.delivered'),
      commandEvent('message.acked'),
      commandEvent('delivery.dropped', { reason: 'queue_full' }),
      { event: 'client.connected', clientid: device, clean_start: true, connected_at: Date.now() },
      { event: 'session.subscribed', clientid: device, username: device, topic: `devices/${device}/commands` },
      {
        event: 'command.reply',
        clientid: device,
        username: device,
        topic: `devices/${device}/command-replies`,
        payload: JSON.stringify({ command_id: randomUUID(), status: 'ok' }),
      },
    ];
    for (const event of events) {
      const handler = all[event.event as keyof typeof all];
      assert.deepEqual(await handler(event), { kind: 'retry', reason: 'postgres_unavailable' }, event.event);
    }
  });

  it('answer 2xx without asking Postgres for what can never match a command', async () => {
    const all = handlers();
    const ignored: EmqxEvent[] = [
      commandEvent('message.delivered', { topic: `devices/${device}/telemetry` }),
      commandEvent('message.delivered', { topic: 'devices/not-a-device/commands', clientid: 'not-a-device' }),
      commandEvent('message.acked', { clientid: randomUUID() }),
      commandEvent('message.acked', { topic: 42 }),
      commandEvent('message.delivered', { pub_props: { 'User-Property': { command_id: 'not-a-uuid' } }, id: 'undefined' }),
      // Nobody subscribed: the publish answered 202, which is what counts.
      commandEvent('message.dropped', { clientid: 'http_api', reason: 'no_subscribers' }),
      // A resumed session keeps what it held.
      { event: 'client.connected', clientid: device, clean_start: false, connected_at: Date.now() },
      { event: 'session.subscribed', clientid: device, username: device, topic: `devices/${randomUUID()}/commands` },
      { event: 'session.subscribed', clientid: device, username: device, topic: 'devices/+/commands' },
      { event: 'command.reply', clientid: device, username: device, topic: `devices/${device}/command-replies`, payload: '{"status":"ok"}' },
      { event: 'command.reply', clientid: device, username: 'someone-else', topic: `devices/${device}/command-replies`, payload: '{}' },
    ];
    for (const event of ignored) {
      const handler = all[event.event as keyof typeof all];
      assert.deepEqual(await handler(event), { kind: 'handled' }, JSON.stringify(event));
    }
  });
});

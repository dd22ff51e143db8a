import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseHocon } from '../../../dev/emqx-sim/hocon.js';
import { createRuleEngine } from '../../../dev/emqx-sim/rule-engine.js';
import type { RenderedRequest } from '../../../dev/emqx-sim/templates.js';

const CONFIG = `
connectors.http.svc { url = "http://device-link:8080", headers { "content-type" = "application/json" } }
actions.http.events { connector = svc, parameters { method = post, path = "/emqx/events" } }
rule_engine {
  rules {
    telemetry { sql = """SELECT id, topic FROM "devices/+/telemetry" """, actions = ["http:events"] }
    filtered { sql = """SELECT id FROM "devices/+/telemetry" WHERE qos = 1""", actions = ["http:events"] }
    delivered { sql = """SELECT id FROM "$events/message_delivered" """, actions = ["http:events"] }
    republish { sql = """SELECT id FROM "devices/+/telemetry" """, actions = ["republish:copy"] }
    off { enable = false, sql = """SELECT id FROM "#" """, actions = ["http:events"] }
  }
}
`;

describe('the EMQX simulation rule engine', () => {
  it('runs the rules it can evaluate and skips the others with a warning', () => {
    const warnings: string[] = [];
    const sent: Array<{ action: string; request: RenderedRequest }> = [];
    const rules = createRuleEngine({
      config: parseHocon(CONFIG),
      emitted: new Set(['message.publish', 'client.connected']),
      dispatch: (action, request) => void sent.push({ action, request }),
      log: { info: () => undefined, warn: (line) => warnings.push(line) },
    });
    assert.deepEqual(rules.loaded, ['telemetry']);
    assert.deepEqual(
      rules.skipped.map((rule) => rule.id),
      ['filtered', 'delivered', 'republish'],
    );
    assert.equal(warnings.length, 3);

    assert.equal(rules.fire({ event: 'message.publish', id: 'A1', topic: 'devices/d1/telemetry', timestamp: 1, node: 'n' }).length, 1);
    assert.equal(rules.fire({ event: 'message.publish', id: 'A2', topic: 'devices/d1/commands', timestamp: 1, node: 'n' }).length, 0);
    assert.equal(rules.fire({ event: 'message.publish', id: 'A3', topic: '$SYS/brokers', timestamp: 1, node: 'n' }).length, 0);
    assert.deepEqual(
      sent.map(({ action, request }) => [action, request.url, JSON.parse(request.body)]),
      [['http:events', '/emqx/events', { id: 'A1', topic: 'devices/d1/telemetry' }]],
    );
  });
});

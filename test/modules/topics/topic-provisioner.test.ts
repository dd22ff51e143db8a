import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTopicReconciliation } from '../../../src/modules/topics/topic-provisioner.js';
import { wireTopics, type Topics } from '../../../src/wiring/topics.js';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { describeTopics, waitForTopics } from '../../helpers/kafka.js';
import { createRegistrySeeder } from '../../helpers/telemetry.js';

const quietLog = { info: () => undefined, warn: () => undefined };

describe('topic provisioning', () => {
  let ctx: TestContext;
  /** Wired as the app wires it, for the calls the registry makes. */
  let topics: Topics;
  let seed: ReturnType<typeof createRegistrySeeder>;

  before(async () => {
    ctx = await createTestContext();
    seed = createRegistrySeeder(ctx.db.url);
    await seed.tenant('alpha');
    await seed.tenant('beta');
    // The app reconciles every tenant's topics in the background once it is ready.
    await ctx.app();
    topics = wireTopics(ctx.wiring());
  });
  after(async () => {
    await seed.close();
    await ctx.close();
  });

  const listTopics = async () => [...(await describeTopics()).keys()].filter((topic) => topic.startsWith(ctx.config.kafka.topicPrefix)).sort();

  it("reconciles every tenant's topics and the unattributed dead-letter topic at start-up", async () => {
    const p = ctx.config.kafka.topicPrefix;
    // The app reconciles in the background once it is ready.
    await waitForTopics([`${p}telemetry.raw.beta`, `${p}telemetry.dlq.unattributed`]);
    assert.deepEqual(await listTopics(), [
      `${p}commands.alpha`,
      `${p}commands.beta`,
      `${p}commands.dlq.alpha`,
      `${p}commands.dlq.beta`,
      `${p}commands.status.alpha`,
      `${p}commands.status.beta`,
      `${p}device.events.alpha`,
      `${p}device.events.beta`,
      `${p}telemetry.dlq.alpha`,
      `${p}telemetry.dlq.beta`,
      `${p}telemetry.dlq.unattributed`,
      `${p}telemetry.raw.alpha`,
      `${p}telemetry.raw.beta`,
    ]);
  });

  it('names a tenant\'s command topics so that status and dead-letter topics are never taken for request topics', () => {
    const names = topics.names;
    const p = ctx.config.kafka.topicPrefix;
    assert.equal(names.commandRequestsTenant(`${p}commands.alpha`), 'alpha');
    // A tenant may be called "status" or "dlq": its request topic is still told apart.
    assert.equal(names.commandRequestsTenant(`${p}commands.status`), 'status');
    assert.equal(names.commandRequestsTenant(`${p}commands.status.alpha`), null);
    assert.equal(names.commandRequestsTenant(`${p}commands.dlq.alpha`), null);
    assert.equal(names.commandRequestsTenant(`${p}telemetry.raw.alpha`), null);
    assert.equal(names.commandRequestsTenant('commands.alpha'), p === '' ? 'alpha' : null, 'another prefix is another deployment');
  });

  it('creates a new tenant\'s topics with the configured partitions, and again harmlessly', async () => {
    await seed.tenant('gamma');
    await topics.provisioner.ensureTenant('gamma');
    await topics.provisioner.ensureTenant('gamma');
    const names = topics.names.forTenant('gamma');
    const described = await describeTopics();
    assert.deepEqual(
      names.map((t) => [t, described.get(t)]).sort(),
      names.map((t) => [t, ctx.config.kafka.topicPartitions]).sort(),
    );
  });

  it('retries a failed reconciliation in the background until it succeeds, and stops when asked', async () => {
    let calls = 0;
    const reconciled: string[][] = [];
    const reconciliation = createTopicReconciliation({
      provisioner: {
        async reconcile(ids) {
          if (++calls < 3) throw new Error('broker not reachable');
          reconciled.push([...ids]);
        },
      },
      listTenantIds: async () => ['alpha'],
      log: quietLog,
      retryDelaysMs: [5],
    });
    reconciliation.start();
    assert.equal(await reconciliation.done, true);
    assert.deepEqual([calls, reconciled], [3, [['alpha']]]);

    const never = createTopicReconciliation({
      provisioner: { reconcile: () => Promise.reject(new Error('down')) },
      listTenantIds: async () => [],
      log: quietLog,
      retryDelaysMs: [5],
    });
    never.start();
    await new Promise((resolve) => setTimeout(resolve, 30));
    await never.stop();
    assert.equal(await never.done, false);
  });
});

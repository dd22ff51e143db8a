import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createTestContext, type TestContext } from '../../helpers/context.js';
import { createDeviceSeeder, type DeviceSeeder } from '../../helpers/devices.js';

describe('device directory', () => {
  let ctx: TestContext;
  let seed: DeviceSeeder;
  let tenantId: string;

  before(async () => {
    ctx = await createTestContext();
    seed = createDeviceSeeder(ctx.db.url);
    tenantId = await seed.tenant();
  });
  after(async () => {
    await seed.close();
    await ctx.close();
  });

  it('answers lookups made together from the database: devices that exist, null for the rest, even ids that are not device ids', async () => {
    const { directory } = ctx.wiring();
    const enabled = await seed.device(tenantId);
    const disabled = await seed.device(tenantId, { disabled: true });
    const absent = randomUUID();
    const [first, second, missing, malformed, again] = await Promise.all(
      [enabled, disabled, absent, 'not-a-device-id', enabled].map((id) => directory.get(id)),
    );
    assert.deepEqual(
      [first?.id, first?.tenantId, first?.disabled, second?.id, second?.disabled],
      [enabled, tenantId, false, disabled, true],
    );
    assert.equal(missing, null);
    assert.equal(malformed, null);
    assert.equal(again, first);
    assert.equal(directory.peek(enabled), first, 'kept in memory');
  });
});

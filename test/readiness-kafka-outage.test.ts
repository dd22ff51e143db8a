import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createTestContext, type TestContext } from './helpers/context.js';
import { createPrivateKafka, type PrivateKafka } from './helpers/private-kafka.js';

describe('/readyz through a Kafka outage', () => {
  let ctx: TestContext;
  let kafka: PrivateKafka;
  let app: FastifyInstance;

  before(async () => {
    kafka = await createPrivateKafka();
    await kafka.start();
    ctx = await createTestContext({ KAFKA_BROKERS: kafka.brokers });
    app = await ctx.app();
  });
  after(async () => {
    await ctx.close();
    await kafka.destroy();
  });

  const ready = async () => {
    const response = await app.inject({ method: 'GET', url: '/readyz' });
    return { status: response.statusCode, body: response.json() as { down: string[] } };
  };

  it('is 200 with the broker up, 503 naming kafka while it is stopped, 200 once it is back', async () => {
    assert.equal((await ready()).status, 200);

    await kafka.stop();
    const whileDown = await ready();
    assert.equal(whileDown.status, 503);
    assert.deepEqual(whileDown.body.down, ['kafka']);

    await kafka.start();
    let back = await ready();
    for (let attempt = 0; back.status !== 200 && attempt < 20; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      back = await ready();
    }
    assert.equal(back.status, 200, JSON.stringify(back.body));
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { adminClient, logCapture } from '../helpers/admin.js';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { createPrivateKafka, type PrivateKafka } from '../helpers/private-kafka.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Kafka as managed services offer it: SASL (SCRAM-SHA-512, SCRAM-SHA-256,
 * PLAIN) over TLS with a CA of its own, and mutual TLS, on a broker of the
 * test's own started by scripts/kafka.sh with KAFKA_SECURITY=sasl_ssl.
 */
describe('Kafka over SASL and TLS', () => {
  let kafka: PrivateKafka;
  let ctx: TestContext;
  let client: Record<string, string>;

  before(async () => {
    kafka = await createPrivateKafka({ security: 'sasl_ssl' });
    await kafka.start();
    client = Object.fromEntries(
      readFileSync(kafka.clientEnv, 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split(/=(.*)/s).slice(0, 2) as [string, string]),
    );
    ctx = await createTestContext({ KAFKA_BROKERS: kafka.brokers });
  });
  after(async () => {
    await ctx?.close();
    await kafka?.destroy();
  });

  const secured = (more: Record<string, string> = {}) => ({
    KAFKA_BROKERS: kafka.brokers,
    KAFKA_SASL_MECHANISM: 'scram-sha-512',
    KAFKA_SASL_USERNAME: client.KAFKA_SASL_USERNAME as string,
    KAFKA_SASL_PASSWORD: client.KAFKA_SASL_PASSWORD as string,
    KAFKA_TLS: 'true',
    KAFKA_TLS_CA_FILE: client.KAFKA_TLS_CA_FILE as string,
    ...more,
  });
  const readiness = async (app: FastifyInstance) => (await app.inject({ method: 'GET', url: '/readyz' })).json() as { status: string; down: string[]; causes: Record<string, string> };
  const untilKafka = async (app: FastifyInstance, status: 'up' | 'down') => {
    let last = await readiness(app);
    await waitFor(async () => {
      last = await readiness(app);
      return status === 'up' ? !last.down.includes('kafka') : last.down.includes('kafka');
    }, 30_000);
    return last;
  };

  for (const mechanism of ['scram-sha-512', 'scram-sha-256', 'plain'] as const) {
    it(`is ready over SASL_SSL with ${mechanism}, and creates a tenant's topics there`, async () => {
      const app = await ctx.app({}, secured({ KAFKA_SASL_MECHANISM: mechanism }));
      assert.deepEqual((await untilKafka(app, 'up')).causes, {});
      const tenant = `sec-${mechanism.replace(/[^a-z0-9]/g, '')}`;
      const created = await adminClient(app).post('/v1/tenants', { id: tenant, name: 'Secured' });
      assert.equal(created.statusCode, 201, created.body);
      await app.close();
    });
  }

  it('a wrong password fails readiness naming the cause, and the password appears nowhere', async () => {
    const logs = logCapture();
    const wrong = 'not-the-password-0123456789';
    const app = await ctx.app({ logStream: logs.stream }, secured({ KAFKA_SASL_PASSWORD: wrong, LOG_LEVEL: 'info' }));
    const answer = await untilKafka(app, 'down');
    assert.equal(answer.causes.kafka, 'authentication_failed');
    assert.ok(!JSON.stringify(answer).includes(wrong));
    assert.ok(!logs.text().includes(wrong), 'the password never reaches a log line');
    assert.match(logs.text(), /kafka unavailable.*authentication_failed|authentication_failed.*kafka unavailable/);
    await app.close();
  });

  it('a broker certificate the configured CA did not sign fails readiness as untrusted', async () => {
    const { KAFKA_TLS_CA_FILE: _ca, ...withoutCa } = secured();
    const app = await ctx.app({}, { ...withoutCa, KAFKA_TLS: 'true' });
    assert.equal((await untilKafka(app, 'down')).causes.kafka, 'tls_untrusted_certificate');
    await app.close();
  });

  it('mutual TLS: ready with the client certificate, refused without it', async () => {
    const mtls = {
      KAFKA_BROKERS: client.KAFKA_MTLS_BROKERS as string,
      KAFKA_TLS: 'true',
      KAFKA_TLS_CA_FILE: client.KAFKA_TLS_CA_FILE as string,
    };
    const withCertificate = await ctx.app({}, { ...mtls, KAFKA_TLS_CERT_FILE: client.KAFKA_TLS_CERT_FILE_FOR_MTLS as string, KAFKA_TLS_KEY_FILE: client.KAFKA_TLS_KEY_FILE_FOR_MTLS as string });
    assert.deepEqual((await untilKafka(withCertificate, 'up')).causes, {});
    await withCertificate.close();
    const without = await ctx.app({}, mtls);
    assert.equal((await untilKafka(without, 'down')).causes.kafka, 'tls_handshake_failed');
    await without.close();
  });
});

/**
 * `npm run openapi`: writes openapi.yaml, the OpenAPI document the routes
 * generate (src/http/openapi.ts). test/openapi.test.ts fails while the
 * committed file differs from it.
 *
 * The document depends on the routes alone, so the app is built against
 * addresses where nothing answers: it connects to nothing and needs no
 * running Postgres, Redis or Kafka.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openApiYaml } from '../src/http/openapi.js';

const secret = () => randomBytes(24).toString('hex');
const nowhere = '127.0.0.1:1';
const config = loadConfig({
  LOG_LEVEL: 'silent',
  MIGRATE_ON_START: 'false',
  COMMANDS_FROM_KAFKA: 'false',
  DATABASE_URL: `postgres://openapi@${nowhere}/openapi`,
  REDIS_URL: `redis://${nowhere}/0`,
  KAFKA_BROKERS: nowhere,
  EMQX_API_URL: `http://${nowhere}`,
  EMQX_API_KEY: 'openapi',
  EMQX_API_SECRET: secret(),
  ADMIN_TOKEN: secret(),
  EMQX_HOOK_TOKEN: secret(),
  CREDENTIAL_CACHE_SECRET: secret(),
  KEY_DIGEST_SECRET: secret() + secret(),
});

const app = await buildApp(config);
try {
  await app.ready();
  const file = fileURLToPath(new URL('../openapi.yaml', import.meta.url));
  await writeFile(file, openApiYaml(app));
  console.log(`openapi: wrote ${file}`);
} finally {
  await app.close();
}

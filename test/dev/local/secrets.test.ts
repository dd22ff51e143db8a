import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadDevelopmentSecrets } from '../../../dev/local/secrets.js';
import { loadConfig } from '../../../src/config.js';

describe('the local run\'s secrets', () => {
  let directory: string;

  before(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'dlm-local-secrets-'));
  });
  after(() => rm(directory, { recursive: true, force: true }));

  it('are random values the service accepts as they are: the local run needs no way around the example-secret check', async () => {
    const { secrets } = await loadDevelopmentSecrets(directory);
    const config = loadConfig({
      ...secrets,
      // What dev/local.ts sets besides the generated secrets.
      EMQX_API_KEY: 'device-link',
      EMQX_API_URL: 'http://127.0.0.1:18083',
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/device_link_local',
      REDIS_URL: 'redis://127.0.0.1:6379/0',
      KAFKA_BROKERS: '127.0.0.1:19092',
    });
    assert.equal(config.admin.rootToken, secrets.ADMIN_TOKEN);
    const again = await loadDevelopmentSecrets(directory);
    assert.deepEqual(again, { secrets, created: [] }, 'generated once, then reused');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEmqxApi, EmqxApiError } from '../../src/infra/emqx-api.js';
import { startEmqxStandIn, type EmqxStandIn } from '../helpers/emqx-stand-in.js';

describe('EMQX REST client', () => {
  let emqx: EmqxStandIn;
  before(async () => {
    emqx = await startEmqxStandIn();
  });
  after(() => emqx.close());

  const client = (secret = emqx.apiSecret, timeoutMs = 1000) =>
    createEmqxApi({ apiUrl: emqx.url, apiKey: emqx.apiKey, apiSecret: secret, apiTimeoutMs: timeoutMs });

  it('reads the connected field and treats 404 as unknown', async () => {
    emqx.setClient('a', true);
    emqx.setClient('b', false);
    assert.equal((await client().getClient('a'))?.connected, true);
    assert.equal((await client().getClient('b'))?.connected, false);
    assert.equal(await client().getClient('c'), null);
  });

  it('kicks with DELETE: 204 kicked, 404 not found', async () => {
    emqx.setClient('k', true);
    assert.equal(await client().kickClient('k'), 'kicked');
    assert.equal(await client().kickClient('k'), 'not_found');
  });

  it('URL-encodes client ids and sends Basic auth', async () => {
    const odd = 'a/b?c#d %';
    emqx.setClient(odd, true);
    assert.equal((await client().getClient(odd))?.connected, true);
    const call = emqx.calls.at(-1);
    assert.equal(call?.clientId, odd);
    assert.equal(call?.authorized, true);
  });

  it('fails loudly on a wrong secret, an error status or an unreachable EMQX', async () => {
    await assert.rejects(client('wrong').getClient('a'), EmqxApiError);
    emqx.failWith(503);
    try {
      await assert.rejects(client().kickClient('a'), EmqxApiError);
    } finally {
      emqx.failWith(null);
    }
    const unreachable = createEmqxApi({ apiUrl: 'http://127.0.0.1:1', apiKey: 'k', apiSecret: 's', apiTimeoutMs: 500 });
    await assert.rejects(unreachable.getClient('a'), EmqxApiError);
  });
});

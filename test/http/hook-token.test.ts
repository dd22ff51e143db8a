import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { addDirectRoute, createDirectRoutes } from '../../src/http/direct-routes.js';
import { BAD_HOOK_TOKEN, hookTokenContext, hookTokenCheck, sameSecret } from '../../src/http/hook-token.js';

describe('sameSecret', () => {
  const expected = 'Bearer hook-token-0123456789';

  it('accepts exactly the expected value', () => {
    assert.equal(sameSecret(expected, expected), true);
    assert.equal(sameSecret(['Bearer hook-token-', '0123456789'].join(''), expected), true);
  });

  it('refuses anything else', () => {
    const refused = [
      undefined,
      '',
      'Bearer',
      expected.slice(0, -1),
      `${expected}0`,
      `${expected.slice(0, -1)}8`,
      `x${expected.slice(1)}`,
      expected.toUpperCase(),
      `${expected}\u0000`,
      'Bearer hook-token-012345678\u0439',
    ];
    for (const presented of refused) assert.equal(sameSecret(presented, expected), false, JSON.stringify(presented));
  });

  it('refuses a value whose characters differ only beyond the low byte', () => {
    assert.equal(sameSecret('\u0141', 'A'), false);
    assert.equal(sameSecret('A', '\u0141'), false);
  });
});

describe('the EMQX context', () => {
  it('takes direct routes only: a route that would not check the hook token is refused when registered', async () => {
    const app = Fastify();
    const direct = createDirectRoutes({ authorized: hookTokenCheck(['t']), unauthorized: BAD_HOOK_TOKEN, log: app.log, recorderFor: () => () => {} });
    try {
      await assert.rejects(
        async () => {
          await app.register(async (emqx) => {
            hookTokenContext(emqx);
            addDirectRoute(emqx, direct, { path: '/emqx/ok', bodyLimit: 16, answer: () => ({ status: 204 }) }, {});
            emqx.post('/emqx/open', async () => ({ result: 'allow' }));
          });
        },
        /POST \/emqx\/open does not check the hook token/,
      );
    } finally {
      await app.close();
    }
  });
});

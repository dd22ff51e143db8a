import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUnavailable } from '../../src/lib/unavailable.js';
import { TimeoutError } from '../../src/lib/with-timeout.js';

const withCode = (code: string, message = 'failed') => Object.assign(new Error(message), { code });

describe('isUnavailable', () => {
  it('recognises a dependency that is down, unreachable or out of connections', () => {
    for (const error of [
      withCode('ECONNREFUSED'),
      withCode('57P03', 'the database system is starting up'),
      withCode('08006'),
      withCode('53300'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Connection terminated unexpectedly'),
      new Error('Client has encountered a connection error and is not queryable'),
      new TimeoutError('redis ping timed out'),
      new Error('query failed', { cause: withCode('ECONNRESET') }),
      new Error('Command timed out'),
      new Error('Too many Cluster redirections. Last error: Error: Connection is closed.'),
      new Error('CLUSTERDOWN The cluster is down'),
    ]) {
      assert.equal(isUnavailable(error), true, String(error));
    }
  });

  it('leaves everything else to be a 500', () => {
    for (const error of [new Error('bug'), withCode('23505', 'duplicate key'), withCode('42P01', 'relation does not exist'), 'a string', null]) {
      assert.equal(isUnavailable(error), false, String(error));
    }
  });
});

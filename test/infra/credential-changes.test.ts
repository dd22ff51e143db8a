import { after, describe, it } from 'node:test';
import { createChangeSignal } from '../../src/infra/credential-changes.js';
import type { RedisClient } from '../../src/infra/redis.js';
import { uniqueTag } from '../helpers/env.js';
import { connectRedis, testRedisSettings } from '../helpers/redis.js';
import { waitFor } from '../helpers/wait.js';

const silent = { warn: () => undefined, info: () => undefined };

describe('the change signal over Redis pub/sub', () => {
  const prefix = `t:${uniqueTag()}:`;
  const clients: RedisClient[] = [];
  const replica = () => {
    const client = connectRedis(testRedisSettings(prefix));
    clients.push(client);
    return { client, signal: createChangeSignal(client, silent) };
  };
  after(() => Promise.all(clients.map((client) => client.close())));

  it('reaches every replica, one announcing included, whichever node a subscriber landed on', async () => {
    // Several replicas: on a cluster their subscriber connections land on different nodes.
    const replicas = Array.from({ length: 4 }, replica);
    const heard = replicas.map(() => 0);
    replicas.forEach(({ signal }, index) => signal.subscribe(() => (heard[index] = (heard[index] ?? 0) + 1)));
    await Promise.all(replicas.map(({ signal }) => signal.ready()));
    replicas[0]?.signal.announce();
    // Well within the second in which replicas read the change log anyway.
    await waitFor(() => heard.every((count) => count >= 1), 500);
  });

  it('tells its listeners to read the log once its subscription is back after a loss', async () => {
    const { client, signal } = replica();
    let heard = 0;
    signal.subscribe(() => heard++);
    await signal.ready();
    client.subscriber().disconnect(true);
    await waitFor(() => heard >= 1, 5000);
  });
});

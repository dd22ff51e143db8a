import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';

export interface PrivateRedis {
  readonly url: string;
  start(): Promise<void>;
  /** Stops the server; like the machine's Redis it keeps nothing, so start() brings it back empty. */
  stop(): Promise<void>;
}

/**
 * A Redis server of the test's own (same binary and settings as the shared
 * one), for tests that take Redis away: stopping the shared server would
 * break every other test file running at the same time.
 */
export async function createPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let server: ChildProcess | undefined;
  const answers = async () => {
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return (await client.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      client.disconnect();
    }
  };
  return {
    url: `redis://127.0.0.1:${port}/0`,
    async start() {
      server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
      for (let waited = 0; !(await answers()); waited += 50) {
        if (waited > 10_000 || server.exitCode !== null) throw new Error(`redis-server on ${port} did not start`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      if (!server || server.exitCode !== null) return;
      const exited = once(server, 'exit');
      server.kill('SIGTERM');
      await exited;
    },
  };
}

export interface PrivateSentinel {
  /** The service's REDIS_* settings that reach it through the Sentinels. */
  readonly env: Readonly<Record<string, string>>;
  start(): Promise<void>;
  /** The port of the node the Sentinels name as the primary now. */
  primaryPort(): Promise<number>;
  /** Resolves once a failover can happen: the replica is in sync, and every Sentinel knows it and the other Sentinels. */
  settled(): Promise<void>;
  /** SENTINEL FAILOVER (once settled): the replica is promoted; resolves with the new primary's port once the Sentinels name it and it answers as primary. */
  failover(): Promise<number>;
  /** Kills the primary without warning (SIGKILL, once settled); resolves with the new primary's port once the Sentinels have failed over to it. */
  killPrimary(): Promise<number>;
  /** Stops every process and deletes their files. */
  stop(): Promise<void>;
}

const MASTER_NAME = 'dlm';

/**
 * A primary behind Sentinel of the test's own, set up as
 * scripts/redis-sentinel.sh sets up one: a primary, a replica and three
 * Sentinels (quorum 2) on loopback, the nodes and the Sentinels each with a
 * password. For tests that fail the primary over: the shared Redis stays
 * untouched.
 */
export async function createPrivateSentinel(options: { downAfterMs?: number } = {}): Promise<PrivateSentinel> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dlm-sentinel-'));
  const [primary, replica, ...sentinels] = await Promise.all(Array.from({ length: 5 }, () => freePort()));
  if (primary === undefined || replica === undefined) throw new Error('no ports');
  const password = randomBytes(16).toString('hex');
  const sentinelPassword = randomBytes(16).toString('hex');
  const processes = new Map<number, ChildProcess>();

  const client = (port: number, secret: string) => {
    const connection = new Redis({ host: '127.0.0.1', port, password: secret, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500, commandTimeout: 1000 });
    connection.on('error', () => undefined);
    return connection;
  };
  /** Runs one command against a process; null when it does not answer. */
  const ask = async (port: number, secret: string, ...command: [string, ...(string | number)[]]): Promise<unknown> => {
    const connection = client(port, secret);
    try {
      await connection.connect();
      return await connection.call(...command);
    } catch {
      return null;
    } finally {
      connection.disconnect();
    }
  };
  const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 20_000) => {
    for (const deadline = Date.now() + timeoutMs; !(await check()); ) {
      if (Date.now() > deadline) throw new Error(`private Sentinel: ${what} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const spawnWith = async (port: number, config: string, sentinel: boolean) => {
    const file = path.join(dir, `${port}.conf`);
    await writeFile(file, config, { mode: 0o600 });
    processes.set(port, spawn('redis-server', [file, ...(sentinel ? ['--sentinel'] : [])], { stdio: 'ignore' }));
  };
  const isPrimary = async (port: number) => {
    const role = await ask(port, password, 'ROLE');
    return Array.isArray(role) && role[0] === 'master';
  };
  const named = async (): Promise<number | null> => {
    for (const port of sentinels) {
      const address = await ask(port, sentinelPassword, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME);
      if (Array.isArray(address)) return Number(address[1]);
    }
    return null;
  };
  /** A replica as SENTINEL REPLICAS describes it (field, value, …), seen up by the Sentinel. */
  const reachable = (fields: unknown) => {
    if (!Array.isArray(fields)) return false;
    const flags = fields[fields.indexOf('flags') + 1];
    return typeof flags === 'string' && !/s_down|o_down|disconnected/.test(flags);
  };
  /** The replica is in sync, and every Sentinel knows it and the other Sentinels: a failover can be asked for, or decided. */
  const settled = async () => {
    const current = await named();
    if (current === null || !(await isPrimary(current))) return false;
    const other = current === primary ? replica : primary;
    const link = await ask(other, password, 'INFO', 'replication');
    if (typeof link !== 'string' || !link.includes('master_link_status:up')) return false;
    for (const port of sentinels) {
      const replicas = await ask(port, sentinelPassword, 'SENTINEL', 'REPLICAS', MASTER_NAME);
      const peers = await ask(port, sentinelPassword, 'SENTINEL', 'SENTINELS', MASTER_NAME);
      if (!Array.isArray(replicas) || replicas.length < 1 || !replicas.every(reachable)) return false;
      if (!Array.isArray(peers) || peers.length < sentinels.length - 1) return false;
    }
    return true;
  };
  const primaryPort = async () => {
    const port = await named();
    if (port === null) throw new Error('private Sentinel: no Sentinel names a primary');
    return port;
  };
  const movedFrom = async (before: number) => {
    await until('the Sentinels name a new primary', async () => {
      const after = await named();
      return after !== null && after !== before && (await isPrimary(after));
    });
    return primaryPort();
  };

  return {
    env: {
      REDIS_SENTINELS: sentinels.map((port) => `127.0.0.1:${port}`).join(','),
      REDIS_SENTINEL_MASTER: MASTER_NAME,
      REDIS_PASSWORD: password,
      REDIS_SENTINEL_PASSWORD: sentinelPassword,
    },
    async start() {
      for (const port of [primary, replica]) {
        // Each node can replicate with the password: after a failover the old primary is a replica.
        await spawnWith(
          port,
          [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `dbfilename ${port}.rdb`, 'save ""', 'appendonly no', `requirepass ${password}`, `masterauth ${password}`, ...(port === replica ? [`replicaof 127.0.0.1 ${primary}`] : [])].join('\n'),
          false,
        );
      }
      await until('the primary answers', () => isPrimary(primary));
      for (const port of sentinels) {
        await spawnWith(
          port,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            `dir ${dir}`,
            `requirepass ${sentinelPassword}`,
            `sentinel sentinel-pass ${sentinelPassword}`,
            `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primary} 2`,
            `sentinel auth-pass ${MASTER_NAME} ${password}`,
            `sentinel down-after-milliseconds ${MASTER_NAME} ${options.downAfterMs ?? 1000}`,
            `sentinel failover-timeout ${MASTER_NAME} 5000`,
          ].join('\n'),
          true,
        );
      }
      await until('the replica is in sync and every Sentinel knows it and the others', settled, 30_000);
    },
    primaryPort,
    settled: () => until('the replica is in sync and every Sentinel knows it and the others', settled, 30_000),
    async failover() {
      const before = await primaryPort();
      await until('the Sentinels take the failover', async () => (await ask(sentinels[0] ?? 0, sentinelPassword, 'SENTINEL', 'FAILOVER', MASTER_NAME)) === 'OK');
      return movedFrom(before);
    },
    async killPrimary() {
      const before = await primaryPort();
      const victim = processes.get(before);
      if (!victim) throw new Error(`private Sentinel: no process on ${before}`);
      const exited = once(victim, 'exit');
      victim.kill('SIGKILL');
      await exited;
      return movedFrom(before);
    },
    async stop() {
      await Promise.all(
        [...processes.values()].map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = once(child, 'exit');
          child.kill('SIGTERM');
          await exited;
        }),
      );
      await rm(dir, { recursive: true, force: true });
    },
  };
}

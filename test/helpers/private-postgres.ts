import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);

export interface PrivatePostgres {
  /** The `postgres` database of the server, user postgres, trust authentication. */
  readonly url: string;
  start(): Promise<void>;
  /** Stops the server (fast shutdown); its data is kept, so start() brings it back as it was. */
  stop(): Promise<void>;
  destroy(): Promise<void>;
}

/** The machine's PostgreSQL binaries (Debian keeps them per major version). */
async function binaries(): Promise<string> {
  const root = '/usr/lib/postgresql';
  const versions = (await readdir(root)).filter((entry) => /^\d+$/.test(entry)).sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error(`no PostgreSQL under ${root}`);
  return path.join(root, versions[0], 'bin');
}

/**
 * A PostgreSQL server of the caller's own, in a temporary directory, for
 * tests that take Postgres away: stopping the shared server would break every
 * other test running at the same time. PostgreSQL refuses to run as root, so
 * as root it runs as the `postgres` user.
 */
export async function createPrivatePostgres(): Promise<PrivatePostgres> {
  const port = await freePort();
  const bin = await binaries();
  const home = await mkdtemp(path.join(os.tmpdir(), 'dlm-private-postgres-'));
  const data = path.join(home, 'data');
  const asOwner = async (command: string, args: string[]) => {
    const root = process.getuid?.() === 0;
    await run(root ? 'runuser' : path.join(bin, command), root ? ['-u', 'postgres', '--', path.join(bin, command), ...args] : args, { timeout: 60_000 });
  };
  if (process.getuid?.() === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: group } = await run('id', ['-g', 'postgres']);
    await chown(home, Number(stdout.trim()), Number(group.trim()));
  }
  await asOwner('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const options = `-p ${port} -k ${home} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start: () => asOwner('pg_ctl', ['-D', data, '-o', options, '-l', path.join(home, 'log'), '-w', 'start']),
    stop: () => asOwner('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']),
    async destroy() {
      await asOwner('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      await rm(home, { recursive: true, force: true });
    },
  };
}

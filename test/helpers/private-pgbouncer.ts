import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

export interface PrivatePgBouncer {
  /** The URL of `database` through the pooler. */
  urlOf(database: string): string;
  stop(): Promise<void>;
}

/**
 * PgBouncer (Debian's package) of the test's own, in transaction mode in
 * front of the machine's Postgres, as production fleets put it: every
 * transaction may run on another server connection, so nothing that relies
 * on a session (session advisory locks, SET, named prepared statements)
 * survives it. Postgres trusts loopback, so the pooler does too.
 */
export async function startPrivatePgBouncer(options: { postgresPort?: number } = {}): Promise<PrivatePgBouncer> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dlm-pgbouncer-'));
  const ini = path.join(dir, 'pgbouncer.ini');
  await writeFile(path.join(dir, 'userlist.txt'), '"postgres" ""\n');
  await writeFile(
    ini,
    [
      '[databases]',
      `* = host=127.0.0.1 port=${options.postgresPort ?? 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${path.join(dir, 'userlist.txt')}`,
      'pool_mode = transaction',
      'max_client_conn = 500',
      'default_pool_size = 8',
      // The service sends statement_timeout at connection start; PgBouncer passes on only what it knows.
      'ignore_startup_parameters = statement_timeout',
      `logfile = ${path.join(dir, 'pgbouncer.log')}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  // PgBouncer refuses to run as root; as root it is started as the postgres user.
  const asRoot = os.userInfo().uid === 0;
  if (asRoot) {
    const { uid, gid } = await postgresUser();
    await chown(dir, uid, gid);
    for (const file of ['pgbouncer.ini', 'userlist.txt']) await chown(path.join(dir, file), uid, gid);
  }
  await chmod(dir, 0o755);
  const child: ChildProcess = spawn('pgbouncer', [...(asRoot ? ['-u', 'postgres'] : []), ini], { stdio: 'ignore' });
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  for (let waited = 0; ; waited += 100) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited (${child.exitCode}); see ${path.join(dir, 'pgbouncer.log')}`);
    const client = new pg.Client({ connectionString: url('postgres'), connectionTimeoutMillis: 1000 });
    const answered = await client.connect().then(
      () => client.query('SELECT 1').then(() => true),
      () => false,
    );
    await client.end().catch(() => undefined);
    if (answered) break;
    if (waited > 10_000) throw new Error('pgbouncer did not answer within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    urlOf: url,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((entry) => entry.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error('no postgres user to run pgbouncer as');
  return { uid: Number(uid), gid: Number(gid) };
}

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../../dev/emqx-sim/emqx-config.js';

const run = promisify(execFile);
const SCRIPT = path.join(REPO_ROOT, 'deploy/emqx/dev-certs.sh');

/** Completes a TLS handshake against the generated server certificate, verifying it with the generated CA. */
async function handshake(directory: string, servername: string, host = '127.0.0.1'): Promise<void> {
  const [cert, key, ca] = await Promise.all(['server.crt', 'server.key', 'ca.crt'].map((file) => readFile(path.join(directory, file))));
  const server = tls.createServer({ cert, key }, (socket) => socket.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const socket = tls.connect({ host, port, ca, servername: servername === '' ? undefined : servername }, () => {
        socket.end();
        resolve();
      });
      socket.on('error', reject);
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

describe('deploy/emqx/dev-certs.sh', () => {
  let directory: string;

  before(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'dlm-dev-certs-'));
    await run('sh', [SCRIPT, directory]);
  });

  after(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('writes the CA, the server certificate and its key, and keeps no CA key', async () => {
    assert.deepEqual((await readdir(directory)).sort(), ['ca.crt', 'server.crt', 'server.key']);
    assert.equal((await stat(path.join(directory, 'server.key'))).mode & 0o777, 0o600);
  });

  it('produces a certificate that clients verifying with ca.crt accept for localhost, emqx and 127.0.0.1', async () => {
    await handshake(directory, 'localhost');
    await handshake(directory, 'emqx');
    await handshake(directory, '', '127.0.0.1');
    await assert.rejects(handshake(directory, 'mqtt.example.com'), /altnames|does not match|Hostname/i);
  });

  it('leaves existing certificates alone', async () => {
    const original = await readFile(path.join(directory, 'server.crt'), 'utf8');
    const { stdout } = await run('sh', [SCRIPT, directory]);
    assert.match(stdout, /already holds/);
    assert.equal(await readFile(path.join(directory, 'server.crt'), 'utf8'), original);
  });
});

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../emqx-sim/emqx-config.js';

const run = promisify(execFile);

/** The development CA and the server certificate it signed, as the TLS listener and its clients read them. */
export interface DevelopmentCertificates {
  /** Where the CA certificate is: what `mosquitto_pub --cafile` takes. */
  readonly caFile: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Whether this call made them (the first run), rather than finding them. */
  readonly created: boolean;
}

/**
 * The certificates of deploy/emqx/dev-certs.sh in `directory`, made there on
 * the first call (openssl) and reused after: the script the compose stack
 * runs for EMQX's 8883 listener, so both have the same kind of CA.
 */
export async function ensureDevelopmentCertificates(directory: string): Promise<DevelopmentCertificates> {
  let created: boolean;
  try {
    const { stdout } = await run('sh', [path.join(REPO_ROOT, 'deploy/emqx/dev-certs.sh'), directory]);
    created = !/already holds/.test(stdout);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`deploy/emqx/dev-certs.sh could not write ${directory} (it needs openssl): ${stderr.trim() || String(error)}`, { cause: error });
  }
  const [ca, cert, key] = await Promise.all(['ca.crt', 'server.crt', 'server.key'].map((file) => readFile(path.join(directory, file))));
  return { caFile: path.join(directory, 'ca.crt'), ca: ca as Buffer, cert: cert as Buffer, key: key as Buffer, created };
}

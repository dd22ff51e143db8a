import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const hex = (bytes: number) => () => randomBytes(bytes).toString('hex');

/**
 * The service's secrets for a local run, generated once and kept in
 * `.local/secrets.json` (git-ignored). A secret added here is generated on the
 * next run and the ones already there are kept. Hex only: the EMQX
 * entrypoint accepts letters, digits and `. _ ~ + / = -` in the hook token and
 * the API secret.
 */
export const DEVELOPMENT_SECRETS = {
  ADMIN_TOKEN: hex(24),
  EMQX_HOOK_TOKEN: hex(24),
  EMQX_API_SECRET: hex(24),
  CREDENTIAL_CACHE_SECRET: hex(24),
  KEY_DIGEST_SECRET: hex(32),
} as const satisfies Record<string, () => string>;

export type DevelopmentSecrets = Record<keyof typeof DEVELOPMENT_SECRETS, string>;

export async function loadDevelopmentSecrets(directory: string): Promise<{ secrets: DevelopmentSecrets; created: string[] }> {
  const file = path.join(directory, 'secrets.json');
  let stored: Record<string, unknown> = {};
  try {
    stored = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file} is unreadable; delete it to start over`, { cause: error });
  }
  const secrets: Record<string, string> = {};
  const created: string[] = [];
  for (const [name, generate] of Object.entries(DEVELOPMENT_SECRETS)) {
    const value = stored[name];
    if (typeof value === 'string' && value !== '') {
      secrets[name] = value;
    } else {
      secrets[name] = generate();
      created.push(name);
    }
  }
  if (created.length > 0) {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await writeFile(file, `${JSON.stringify({ ...stored, ...secrets }, null, 2)}\n`, { mode: 0o600 });
  }
  return { secrets: secrets as DevelopmentSecrets, created };
}

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseHocon, type HoconObject } from './hocon.js';

const run = promisify(execFile);

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const EMQX_TEMPLATE = path.join(REPO_ROOT, 'deploy/emqx/emqx.conf');
export const EMQX_ENTRYPOINT = path.join(REPO_ROOT, 'deploy/emqx/docker-entrypoint.sh');

export interface RenderedEmqxConfig {
  /** The rendered emqx.conf, parsed. */
  readonly config: HoconObject;
  readonly text: string;
  /** The API key bootstrap file EMQX reads. */
  readonly apiKeys: string;
}

export interface EntrypointEnv {
  DEVICE_LINK_HOOK_TOKEN?: string;
  DEVICE_LINK_API_KEY?: string;
  DEVICE_LINK_API_SECRET?: string;
}

/**
 * Runs deploy/emqx/docker-entrypoint.sh the way the EMQX container does, with
 * its output redirected to a temporary directory and `true` in place of EMQX,
 * and returns what EMQX would read. Rejects with the script's error when it
 * refuses the environment.
 */
export async function renderEmqxConfig(env: EntrypointEnv): Promise<RenderedEmqxConfig> {
  const etc = await mkdtemp(path.join(os.tmpdir(), 'dlm-emqx-etc-'));
  try {
    await run('sh', [EMQX_ENTRYPOINT, 'true'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DEVICE_LINK_EMQX_TEMPLATE: EMQX_TEMPLATE, DEVICE_LINK_EMQX_ETC: etc, ...env },
    });
    const text = await readFile(path.join(etc, 'emqx.conf'), 'utf8');
    const apiKeys = await readFile(path.join(etc, 'device-link-api-keys.bootstrap'), 'utf8');
    return { config: parseHocon(text), text, apiKeys };
  } finally {
    await rm(etc, { recursive: true, force: true });
  }
}

/** A HOCON duration ("45s", "10m", "500ms") in milliseconds. */
export function durationMs(value: unknown): number {
  const match = typeof value === 'string' ? /^(\d+)(ms|s|m|h)$/.exec(value) : null;
  if (!match) throw new Error(`not a duration: ${String(value)}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  return Number(match[1]) * unit;
}

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../dev/emqx-sim/emqx-config.js';

export interface ConfigRow {
  readonly name: string;
  readonly defaultValue: string;
  readonly meaning: string;
}

/** The rows of the configuration table in docs/configuration.md (every row naming a variable). */
export function configDocTable(doc = readFileSync(path.join(REPO_ROOT, 'docs/configuration.md'), 'utf8')): ConfigRow[] {
  const section = doc;
  const rows: ConfigRow[] = [];
  for (const line of section.split('\n')) {
    const cells = line.trim().startsWith('|') ? line.trim().replace(/^\||\|$/g, '').split('|').map((cell) => cell.trim()) : null;
    if (!cells || cells.length < 3) continue;
    const name = /^`([A-Z][A-Z0-9_]*)`$/.exec(cells[0] ?? '')?.[1];
    if (name === undefined) continue;
    rows.push({ name, defaultValue: cells[1] ?? '', meaning: cells.slice(2).join('|') });
  }
  if (rows.length === 0) throw new Error('the configuration table in docs/configuration.md has no rows');
  return rows;
}

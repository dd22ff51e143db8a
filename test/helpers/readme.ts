import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../dev/emqx/emqx-config.js';

export interface ConfigRow {
  readonly name: string;
  readonly defaultValue: string;
  readonly meaning: string;
}

/** The rows of the README's configuration table (section "## Configuration"). */
export function readmeConfigTable(readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')): ConfigRow[] {
  const section = /^## Configuration\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  if (section === undefined) throw new Error('README.md has no "## Configuration" section');
  const rows: ConfigRow[] = [];
  for (const line of section.split('\n')) {
    const cells = line.trim().startsWith('|') ? line.trim().replace(/^\||\|$/g, '').split('|').map((cell) => cell.trim()) : null;
    if (!cells || cells.length < 3) continue;
    const name = /^`([A-Z][A-Z0-9_]*)`$/.exec(cells[0] ?? '')?.[1];
    if (name === undefined) continue;
    rows.push({ name, defaultValue: cells[1] ?? '', meaning: cells.slice(2).join('|') });
  }
  if (rows.length === 0) throw new Error('the README configuration table has no rows');
  return rows;
}

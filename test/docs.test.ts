import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../dev/emqx-sim/emqx-config.js';

/**
 * Docs live with the code: every document a comment or a doc cites is in the
 * repository, every link between the docs lands on a file and a heading that
 * exist, and the README stays the short front door it is meant to be.
 */

const CODE_DIRS = ['src', 'dev', 'test', 'deploy', 'bench', 'soak', 'scripts', 'migrations', '.ci'];
const CODE_FILE = /\.(ts|mjs|js|sh|conf|ya?ml|sql)$|^run$/;

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    if (entry === 'node_modules' || entry.startsWith('.local')) return [];
    const full = path.join(dir, entry);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}

const docs = ['README.md', ...readdirSync(path.join(REPO_ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(path.join(REPO_ROOT, file), 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((match) => anchorOf(match[1] as string)));
}

describe('the docs', () => {
  it('every document cited by a comment or script exists in the repository', () => {
    const missing: string[] = [];
    for (const dir of CODE_DIRS) {
      for (const file of filesUnder(path.join(REPO_ROOT, dir)).filter((name) => CODE_FILE.test(path.basename(name)))) {
        const text = readFileSync(file, 'utf8');
        for (const match of text.matchAll(/(?<![\w/.-])((?:[\w-]+\/)*[\w-]+\.md)\b/g)) {
          const cited = match[1] as string;
          if (!existsSync(path.join(REPO_ROOT, cited))) missing.push(`${path.relative(REPO_ROOT, file)} cites ${cited}`);
        }
      }
    }
    assert.deepEqual(missing, []);
  });

  it('every link in the README and docs/ lands on a file, and an anchor on a heading, that exist', () => {
    const broken: string[] = [];
    for (const doc of docs) {
      const text = readFileSync(path.join(REPO_ROOT, doc), 'utf8').replace(/```[\s\S]*?```/g, '');
      for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const link = match[1] as string;
        if (/^(https?:|mailto:)/.test(link)) continue;
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const file = target === '' ? doc : path.normalize(path.join(path.dirname(doc), target));
        if (!existsSync(path.join(REPO_ROOT, file))) {
          broken.push(`${doc}: ${link} (no such file)`);
          continue;
        }
        if (anchor !== undefined && file.endsWith('.md') && !anchorsOf(file).has(anchor)) broken.push(`${doc}: ${link} (no such heading)`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('the README is a front door: at most 300 lines, with a diagram and the two quick-start commands', () => {
    const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    assert.ok(readme.split('\n').length <= 300, `README.md has ${readme.split('\n').length} lines`);
    assert.match(readme, /device ──MQTT──▶ EMQX/);
    assert.match(readme, /npm ci && npm run local/);
    assert.match(readme, /npm test/);
    for (const doc of docs.filter((name) => name !== 'README.md')) assert.ok(readme.includes(`](${doc})`), `the README links ${doc}`);
  });
});

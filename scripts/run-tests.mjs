// Runs every test/**/*.test.ts file with node's built-in test runner. Each file
// runs in its own process; files are isolated (own database, Redis prefix and
// Kafka topics) so several run at once. The files under test/fault/ restart
// dependencies of their own and load the machine: they run after the others,
// one at a time. Arguments narrow the run to the files whose path contains
// one of them.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function findTests(dir) {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) return findTests(full);
    return entry.endsWith('.test.ts') ? [full] : [];
  });
}

const filters = process.argv.slice(2);
const files = findTests('test')
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const fault = files.filter((file) => file.startsWith(path.join('test', 'fault') + path.sep));
const regular = files.filter((file) => !fault.includes(file));

function run(group, concurrency) {
  if (group.length === 0) return Promise.resolve(0);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...group],
    { stdio: 'inherit' },
  );
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ? 1 : (code ?? 1))));
}

const regularCode = await run(regular, process.env.TEST_CONCURRENCY ?? '3');
const faultCode = await run(fault, '1');
process.exit(regularCode || faultCode);

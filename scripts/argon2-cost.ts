// Measures argon2id verify time for the given parameters on this machine:
//   npx tsx scripts/argon2-cost.ts [memoryKib] [timeCost] [parallelism]
import argon2 from 'argon2';

const [memoryCost = 19 * 1024, timeCost = 2, parallelism = 1] = process.argv.slice(2).map(Number);
const hash = await argon2.hash('sk_live_example', { type: argon2.argon2id, memoryCost, timeCost, parallelism });
const runs = 20;
await argon2.verify(hash, 'sk_live_example');
const started = process.hrtime.bigint();
for (let i = 0; i < runs; i++) await argon2.verify(hash, 'sk_live_example');
const ms = Number(process.hrtime.bigint() - started) / 1e6 / runs;
console.log(`argon2id m=${memoryCost} KiB t=${timeCost} p=${parallelism}: ${ms.toFixed(1)} ms per verify (mean of ${runs})`);

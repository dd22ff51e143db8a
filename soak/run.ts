// npm run soak [-- --duration <s>] [--devices <n>] [--outage <s>]: the fault
// soak with its table; exits 1 when anything was lost, allowed wrongly or
// answered 500.
import { parseArgs } from 'node:util';
import { formatReport, runSoak } from './soak.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '180' },
    devices: { type: 'string', default: '50' },
    outage: { type: 'string', default: '10' },
  },
});

const report = await runSoak({
  durationS: Number(values.duration),
  devices: Number(values.devices),
  outageS: Number(values.outage),
  log: (line) => console.log(`soak: ${line}`),
});
console.log(formatReport(report));
process.exit(report.failures.length === 0 ? 0 : 1);

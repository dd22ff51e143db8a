// The service under test, built exactly as main.ts builds it, from the
// compiled output on plain node — what the Dockerfile runs — on a database,
// Redis prefix and topic prefix of its own (given by the runner).
import { buildApp } from '../dist/app.js';
import { loadConfig } from '../dist/config.js';

const app = await buildApp(loadConfig());
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));

// The ceiling: a bare Fastify handler answering the same requests with a
// response of the same shape, and nothing else (no hooks, no validation, no
// I/O), on plain node like the service.
import Fastify from 'fastify';

const app = Fastify({ logger: false, bodyLimit: 12 * 1024 * 1024 });
app.get('/*', async () => ({ status: 'ok' }));
app.post('/*', async () => ({ result: 'allow' }));
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));

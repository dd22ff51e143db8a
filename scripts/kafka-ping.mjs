// Exits 0 when a Kafka broker at the given host:port answers an ApiVersions
// request. Dependency-free so scripts/kafka.sh works before `npm ci`.
import net from 'node:net';

const [host, port] = (process.argv[2] ?? '127.0.0.1:19092').split(':');
const clientId = Buffer.from('dlm-ping');
// ApiVersions v0: api_key=18, api_version=0, correlation_id=1, client_id.
const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length);
body.writeInt16BE(18, 0);
body.writeInt16BE(0, 2);
body.writeInt32BE(1, 4);
body.writeInt16BE(clientId.length, 8);
clientId.copy(body, 10);
const frame = Buffer.alloc(4 + body.length);
frame.writeInt32BE(body.length, 0);
body.copy(frame, 4);

const socket = net.connect(Number(port), host);
const timer = setTimeout(() => { socket.destroy(); process.exit(1); }, 2000);
let received = Buffer.alloc(0);
socket.on('connect', () => socket.write(frame));
socket.on('data', (chunk) => {
  received = Buffer.concat([received, chunk]);
  if (received.length >= 10) {
    const correlationId = received.readInt32BE(4);
    const errorCode = received.readInt16BE(8);
    clearTimeout(timer);
    socket.destroy();
    process.exit(correlationId === 1 && errorCode === 0 ? 0 : 1);
  }
});
socket.on('error', () => { clearTimeout(timer); process.exit(1); });

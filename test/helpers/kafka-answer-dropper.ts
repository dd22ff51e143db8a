import net from 'node:net';

/** Kafka's API key of a Produce request. */
const PRODUCE = 0;

export interface KafkaAnswerDropper {
  /**
   * The socket factory a kafkajs client connects through: every connection,
   * whatever broker address it names, reaches the one broker behind the dropper.
   */
  socketFactory(args: { onConnect: () => void }): net.Socket;
  /**
   * The next `count` answers to Produce requests never reach the client: the
   * broker has handled the request (and written its records), then the
   * connection closes, as when a broker dies before its answer goes out.
   */
  dropProduceAnswers(count: number): void;
  /** Produce answers dropped so far. */
  readonly dropped: number;
  close(): Promise<void>;
}

/** Calls `onFrame` with each whole Kafka frame (size prefix included) as bytes arrive. */
function frames(onFrame: (frame: Buffer) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
      const size = 4 + pending.readInt32BE(0);
      onFrame(pending.subarray(0, size));
      pending = pending.subarray(size);
    }
  };
}

/**
 * A TCP relay between a kafkajs client and a plaintext broker that can lose
 * a Produce answer after the broker acted on it. Requests carry their API key
 * and correlation id; answers carry the correlation id, which tells a Produce
 * answer apart.
 */
export async function createKafkaAnswerDropper(broker: string): Promise<KafkaAnswerDropper> {
  const [host = '127.0.0.1', port = '9092'] = broker.split(':');
  let toDrop = 0;
  let dropped = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port: Number(port) });
    sockets.add(client).add(upstream);
    const produceIds = new Set<number>();
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('close', () => {
        sockets.delete(socket);
        closeBoth();
      });
      socket.on('error', closeBoth);
    }
    client.on(
      'data',
      frames((frame) => {
        if (frame.length >= 12 && frame.readInt16BE(4) === PRODUCE) produceIds.add(frame.readInt32BE(8));
        upstream.write(frame);
      }),
    );
    upstream.on(
      'data',
      frames((frame) => {
        const correlationId = frame.readInt32BE(4);
        if (produceIds.delete(correlationId) && toDrop > 0) {
          toDrop--;
          dropped++;
          closeBoth();
          return;
        }
        client.write(frame);
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    socketFactory: ({ onConnect }) => net.connect({ host: '127.0.0.1', port: address.port }, onConnect),
    dropProduceAnswers(count) {
      toDrop = count;
    },
    get dropped() {
      return dropped;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * With several nodes (REDIS_URL set), socket.io's rooms span the nodes through Redis pub/sub
 * (@socket.io/redis-adapter): an event the router emits on node A to a teller's room reaches the
 * teller's console connected to node B, and `fetchSockets()` sees sockets on every node. One
 * node (no REDIS_URL) keeps socket.io's in-memory adapter. Requests between nodes (a call's
 * operations, run where its media are) go through src/cluster/, not through socket.io.
 */
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import type { Logger } from '../src/logger.ts';

export interface SocketAdapter {
  adapter: ReturnType<typeof createAdapter>;
  close(): Promise<void>;
}

export async function openSocketAdapter(opts: { url: string; keyPrefix: string; log: Logger }): Promise<SocketAdapter> {
  const pub = new Redis(opts.url, { maxRetriesPerRequest: null, lazyConnect: true });
  const sub = pub.duplicate();
  for (const [name, client] of [['pub', pub], ['sub', sub]] as const) {
    // ioredis reconnects by itself; errors while Redis is away are logged, never thrown.
    client.on('error', (err: Error) => opts.log.warn({ err: { message: err.message }, client: name }, 'socket.io adapter: Redis connection error'));
  }
  await Promise.all([pub.connect(), sub.connect()]);
  // The adapter does not catch its publishes. A cross-node request made while the node shuts down
  // (a disconnect handler asking which sockets remain) fails on the closed connection: log it
  // instead of leaving an unhandled rejection.
  let closing = false;
  const publish = pub.publish.bind(pub) as (...args: unknown[]) => Promise<number>;
  (pub as unknown as { publish: (...args: unknown[]) => Promise<number> }).publish = (...args: unknown[]) => {
    const sent = publish(...args);
    sent.catch((err: Error) => {
      if (!closing) opts.log.warn({ err: { message: err.message } }, 'socket.io adapter: publish failed');
    });
    return sent;
  };
  const adapter = createAdapter(pub, sub, { key: `${opts.keyPrefix}socket.io` });
  opts.log.info('socket.io: Redis adapter (rooms span the nodes)');
  return {
    adapter,
    async close() {
      closing = true;
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}

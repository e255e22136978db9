/**
 * The load balancer in front of several nodes, as small as it can be: each TCP connection goes to
 * the first node in the list that accepts it. While node A is up, every page reaches A; once A is
 * dead its pages' reconnects reach B. A WebSocket is one TCP connection, so a socket.io page stays
 * on the node it reached until that connection drops.
 */
import net from 'node:net';

export interface FailoverProxy {
  url: string;
  port: number;
  /** Backends in order of preference. */
  backends: number[];
  close(): Promise<void>;
}

export async function startFailoverProxy(backends: number[]): Promise<FailoverProxy> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    client.pause();
    const tryBackend = (i: number) => {
      if (i >= backends.length) return client.destroy();
      const upstream = net.connect({ host: '127.0.0.1', port: backends[i]! });
      upstream.once('error', () => tryBackend(i + 1));
      upstream.once('connect', () => {
        sockets.add(upstream);
        upstream.removeAllListeners('error');
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => {
          sockets.delete(upstream);
          client.destroy();
        });
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryBackend(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    backends,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

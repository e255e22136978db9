/** A real HTTP receiver on 127.0.0.1 standing in for the bank's webhook endpoint (its answers scripted by the test). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const SECRET = 'whsec-test-0123456789abcdef0123456789abcdef';

export interface ReceivedRequest {
  n: number;
  headers: http.IncomingHttpHeaders;
  rawBody: string;
  body: { id: string; type: string; createdAt: string; data: Record<string, unknown> };
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  /** Never answer (for timeouts and in-flight aborts). */
  hang?: boolean;
}

/** A real HTTP receiver on 127.0.0.1 whose answers a test scripts. */
export interface Receiver {
  url: string;
  requests: ReceivedRequest[];
  /** Requests being answered right now (for the concurrency bound). */
  inFlight: number;
  maxInFlight: number;
  reply: (req: ReceivedRequest) => Reply | Promise<Reply>;
  /** Resolves once `count` requests have arrived. */
  waitFor(count: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(reply: Receiver['reply'] = () => ({ status: 200 })): Promise<Receiver> {
  const waiters: { count: number; resolve: () => void }[] = [];
  const hanging = new Set<http.ServerResponse>();
  const r: Receiver = {
    url: '',
    requests: [],
    inFlight: 0,
    maxInFlight: 0,
    reply,
    waitFor(count) {
      if (r.requests.length >= count) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const rec: ReceivedRequest = { n: r.requests.length + 1, headers: req.headers, rawBody, body: JSON.parse(rawBody) };
      r.requests.push(rec);
      r.inFlight += 1;
      r.maxInFlight = Math.max(r.maxInFlight, r.inFlight);
      for (const w of waiters.splice(0)) {
        if (r.requests.length >= w.count) w.resolve();
        else waiters.push(w);
      }
      const answer = await r.reply(rec);
      if (answer.hang) {
        hanging.add(res);
        res.on('close', () => {
          hanging.delete(res);
          r.inFlight -= 1;
        });
        return;
      }
      r.inFlight -= 1;
      res.writeHead(answer.status, answer.headers ?? {});
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return r;
}

/**
 * The customers of bench/signaling.ts, in their own process (so their sockets and event loop do
 * not count in the server's memory or time). The parent sends `{ add: n }` over IPC; this process
 * creates n sessions through the HTTP API, connects each to `/customer` with its token, emits
 * `queue:join` and times the acknowledgement, keeps every socket open, and answers with what it
 * saw. Only loopback URLs are accepted.
 *
 *   spawned by bench/signaling.ts with: BENCH_URL, BENCH_API_KEY
 */
import { io, type Socket } from 'socket.io-client';

const URL_ = process.env.BENCH_URL ?? '';
const API_KEY = process.env.BENCH_API_KEY ?? '';
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(URL_)) throw new Error(`BENCH_URL must be http://127.0.0.1:PORT, got ${URL_}`);
/** Joins in flight at once: the load of a crowd arriving, bounded so one step does not open all sockets in one tick. */
const CONCURRENCY = Number(process.env.BENCH_CLIENT_CONCURRENCY ?? 50);
const JOIN_TIMEOUT_MS = Number(process.env.BENCH_JOIN_TIMEOUT_MS ?? 60_000);

const sockets: Socket[] = [];
let disconnected = 0;
let seq = 0;

export interface StepReport {
  added: number;
  joined: number;
  failed: number;
  errors: Record<string, number>;
  joinMs: number[];
  connectMs: number[];
  open: number;
  disconnected: number;
  seconds: number;
}

async function one(report: StepReport): Promise<void> {
  const n = seq++;
  const res = await fetch(`${URL_}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
    body: JSON.stringify({ businessType: 'consultation', language: 'en', priority: 0, customerRef: `BENCH-SIG-${n}` }),
  });
  if (res.status !== 201) throw new Error(`POST /api/sessions ${res.status}`);
  const { customerToken } = (await res.json()) as { customerToken: string };
  const t0 = performance.now();
  const socket = io(`${URL_}/customer`, {
    auth: { token: customerToken },
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: JOIN_TIMEOUT_MS,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
  report.connectMs.push(performance.now() - t0);
  sockets.push(socket);
  socket.once('disconnect', () => disconnected++);
  const t1 = performance.now();
  const ack = (await socket.timeout(JOIN_TIMEOUT_MS).emitWithAck('queue:join', { consent: true })) as { ok: boolean; error?: { code: string } };
  if (!ack.ok) throw new Error(`queue:join refused: ${ack.error?.code}`);
  report.joinMs.push(performance.now() - t1);
  report.joined++;
}

async function add(count: number): Promise<StepReport> {
  const report: StepReport = { added: count, joined: 0, failed: 0, errors: {}, joinMs: [], connectMs: [], open: 0, disconnected: 0, seconds: 0 };
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
      while (next < count) {
        next++;
        try {
          await one(report);
        } catch (err) {
          report.failed++;
          const key = (err as Error).message.slice(0, 80);
          report.errors[key] = (report.errors[key] ?? 0) + 1;
        }
      }
    }),
  );
  report.seconds = (performance.now() - started) / 1000;
  report.open = sockets.filter((s) => s.connected).length;
  report.disconnected = disconnected;
  return report;
}

process.on('message', (msg: { add?: number; close?: boolean }) => {
  if (msg.close) {
    for (const s of sockets) s.disconnect();
    process.exit(0);
  }
  if (typeof msg.add === 'number') {
    void add(msg.add).then((r) => process.send!(r));
  }
});
process.send!({ ready: true });

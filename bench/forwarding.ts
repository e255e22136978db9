/**
 * What it costs when a call's media are on another node: two nodes in this process (buildApp on
 * two loopback ports) share one Redis. Two calls run at once, both with their media on node B (the
 * teller's node); one customer is connected to B (in process), the other to A (each media message
 * is forwarded to B through Redis and answered back). Both customers send the same media messages,
 * interleaved one by one, and the round trips are compared side by side:
 * - `media:capabilities` (no media work: the hop alone),
 * - `media:restartIce` on a real WebRTC transport (mediasoup work on B).
 *
 *   node --import tsx bench/forwarding.ts        (Redis at REDIS_URL, default 127.0.0.1:6379)
 *
 * Environment: BENCH_ROUNDS (default 500), BENCH_JSON=1 (also one JSON line).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { io, type Socket } from 'socket.io-client';
import { buildApp, type VideoTellerApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { freePort, percentile } from './util.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 500);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const API_KEY = 'bench-bank-api-key-0123456789';
const PREFIX = `vt-bench-fwd-${process.pid}:`;

interface Node {
  app: VideoTellerApp;
  url: string;
  dir: string;
}

async function startNode(name: string): Promise<Node> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vt-bench-fwd-${name}-`));
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: String(await freePort()),
    DATA_DIR: dir,
    API_KEYS: `bench:${API_KEY}`,
    LOG_LEVEL: 'silent',
    MEDIA_WORKERS: '1',
    WRAP_UP_MS: '0',
    REDIS_URL,
    REDIS_KEY_PREFIX: PREFIX,
    JWT_SECRET: 'bench-forwarding-secret-0123456789abcdefghijklmn',
    OTP_SECRET: 'bench-forwarding-otp-secret-0123456789abcdefghi',
    NODE_ID: `bench-${name}`,
  });
  const app = await buildApp(config, createLogger('silent'));
  return { app, url: await app.listen(), dir };
}

function open(url: string, ns: string, token: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = io(`${url}${ns}`, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

function ask<T = unknown>(s: Socket, event: string, payload: unknown): Promise<T> {
  return new Promise((resolve, reject) =>
    s.emit(event, payload, (r: { ok: boolean; data?: T; error?: unknown }) => (r.ok ? resolve(r.data as T) : reject(new Error(`${event}: ${JSON.stringify(r.error)}`)))),
  );
}

async function post<T>(url: string, body: unknown, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** A call with its media on `teller`'s node and the customer connected to `customerNode`. */
async function call(customerNode: Node, tellerNode: Node, username: string, password: string, language: string): Promise<Socket> {
  const { token } = await post<{ token: string }>(`${tellerNode.url}/api/auth/login`, { username, password });
  const teller = await open(tellerNode.url, '/teller', token);
  const session = await post<{ customerToken: string }>(
    `${customerNode.url}/api/sessions`,
    { businessType: 'consultation', language, priority: 0, customerRef: `BENCH-${language}` },
    { 'x-api-key': API_KEY },
  );
  const customer = await open(customerNode.url, '/customer', session.customerToken);
  const offered = new Promise<{ offerId: string }>((r) => teller.once('offer:new', r));
  const started = new Promise((r) => customer.once('call:start', r));
  await ask(customer, 'queue:join', { consent: true });
  await ask(teller, 'teller:availability', { status: 'available' });
  await ask(teller, 'offer:accept', { offerId: (await offered).offerId });
  await started;
  return customer;
}

async function main(): Promise<void> {
  const a = await startNode('a');
  const b = await startNode('b');
  try {
    // Both calls' media on B (the tellers' node). Alice speaks en/de, Bob en/fr: one call each.
    const local = await call(b, b, 'alice', 'alice-demo-pass', 'de');
    const remote = await call(a, b, 'bob', 'bob-demo-pass', 'fr');
    const transports = new Map<Socket, string>();
    for (const s of [local, remote]) transports.set(s, (await ask<{ id: string }>(s, 'media:createTransport', { direction: 'send' })).id);

    const ops: Array<[string, (s: Socket) => Promise<unknown>]> = [
      ['media:capabilities', (s) => ask(s, 'media:capabilities', {})],
      ['media:restartIce', (s) => ask(s, 'media:restartIce', { transportId: transports.get(s) })],
    ];
    const results: Record<string, { local: number[]; remote: number[] }> = {};
    for (const [name, op] of ops) {
      const times = { local: [] as number[], remote: [] as number[] };
      for (let i = 0; i < 50; i++) await Promise.all([op(local), op(remote)]); // warm-up
      for (let i = 0; i < ROUNDS; i++) {
        // Interleaved, alternating which goes first, so both see the same machine.
        const order = i % 2 === 0 ? (['local', 'remote'] as const) : (['remote', 'local'] as const);
        for (const which of order) {
          const t0 = process.hrtime.bigint();
          await op(which === 'local' ? local : remote);
          times[which].push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      }
      results[name] = times;
    }

    console.log(`media round trips, ${ROUNDS} each, customer on the media node (local) vs on the other node (forwarded through Redis); load ${os.loadavg()[0]!.toFixed(2)}`);
    console.log('message                 local p50   p99   forwarded p50   p99   ratio p50   p99');
    const json: Record<string, unknown> = {};
    for (const [name, t] of Object.entries(results)) {
      const l50 = percentile(t.local, 50);
      const l99 = percentile(t.local, 99);
      const r50 = percentile(t.remote, 50);
      const r99 = percentile(t.remote, 99);
      console.log(
        `${name.padEnd(22)} ${l50.toFixed(2).padStart(8)} ${l99.toFixed(2).padStart(6)}   ${r50.toFixed(2).padStart(12)} ${r99.toFixed(2).padStart(6)}   ${(r50 / l50).toFixed(2).padStart(8)}× ${(r99 / l99).toFixed(2).padStart(5)}×`,
      );
      json[name] = { localP50: l50, localP99: l99, forwardedP50: r50, forwardedP99: r99 };
    }
    if (process.env.BENCH_JSON) console.log(JSON.stringify(json));
    local.disconnect();
    remote.disconnect();
  } finally {
    await a.app.close();
    await b.app.close();
    for (const n of [a, b]) rmSync(n.dir, { recursive: true, force: true });
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

/**
 * Signaling benchmark: how many waiting customers one node holds. This process runs the real
 * server (buildApp: memory store, file ledger in a temp DATA_DIR, listening on 127.0.0.1); a second
 * Node process (bench/signaling-clients.ts) opens socket.io customer connections in steps: create
 * the session with the HTTP API and the API key, connect to /customer with the token, emit
 * queue:join. No teller is online, so every customer stays queued. At each step it prints how many
 * stay connected and queued, the server's RSS and heap per customer (after a GC; delta from the
 * idle server / customers), and queue:join latency p50/p99.
 *
 *   node --import tsx bench/signaling.ts
 *
 * Environment:
 *   BENCH_STEPS                cumulative customer counts (default 500,1000,2000,4000)
 *   BENCH_STEP_MAX_S           do not start the next step when one took longer (default 150)
 *   BENCH_CLIENT_CONCURRENCY   joins in flight at once from the client process (default 50)
 *   BENCH_JSON=1               also print the figures as one JSON line
 *
 * Stops before the open-file limit (`ulimit -n`): each customer is one descriptor on each side.
 */
import { execSync, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import type { StepReport } from './signaling-clients.ts';
import { freePort, percentile } from './util.ts';

const STEPS = (process.env.BENCH_STEPS ?? '500,1000,2000,4000').split(',').map(Number);
const STEP_MAX_S = Number(process.env.BENCH_STEP_MAX_S ?? 150);
const API_KEY = 'bench-bank-api-key-0123456789';
const here = path.dirname(fileURLToPath(import.meta.url));

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function settledMemory(): Promise<{ rss: number; heap: number }> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 200));
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

async function main(): Promise<void> {
  const fdLimit = Number(execSync('ulimit -n', { shell: '/bin/bash' }).toString().trim());
  const loadStart = os.loadavg();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vt-bench-sig-'));
  const port = await freePort();
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: dataDir,
    API_KEYS: `bench:${API_KEY}`,
    LOG_LEVEL: 'silent',
    MEDIA_WORKERS: '1',
  });
  const app = await buildApp(config, createLogger('silent'));
  const url = await app.listen();
  const child = fork(path.join(here, 'signaling-clients.ts'), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_URL: url.replace('localhost', '127.0.0.1'), BENCH_API_KEY: API_KEY },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ask = (msg: object) =>
    new Promise<StepReport & { ready?: boolean }>((resolve) => {
      child.once('message', (m) => resolve(m as StepReport));
      if (Object.keys(msg).length > 0) child.send(msg);
    });
  const rows: string[][] = [];
  const json: object[] = [];
  try {
    await ask({});
    const base = await settledMemory();
    const allJoins: number[] = [];
    let total = 0;
    let joinedTotal = 0;
    let stopReason = 'all steps done';
    for (const step of STEPS) {
      if (step + 64 > fdLimit) {
        stopReason = `next step (${step}) would pass ulimit -n ${fdLimit}`;
        break;
      }
      const r = await ask({ add: step - total });
      total = step;
      joinedTotal += r.joined;
      allJoins.push(...r.joinMs);
      const queued = (await app.store.queuedSessionIds()).length;
      const mem = await settledMemory();
      const perRss = (mem.rss - base.rss) / Math.max(1, queued);
      const perHeap = (mem.heap - base.heap) / Math.max(1, queued);
      const row = {
        customers: step,
        open: r.open,
        queued,
        failed: r.failed,
        stepSeconds: r.seconds,
        joinsPerS: r.joined / r.seconds,
        joinP50: percentile(r.joinMs, 50),
        joinP99: percentile(r.joinMs, 99),
        connectP50: percentile(r.connectMs, 50),
        rssMiB: mem.rss / 2 ** 20,
        heapMiB: mem.heap / 2 ** 20,
        rssPerCustomerKiB: perRss / 1024,
        heapPerCustomerKiB: perHeap / 1024,
        load1: os.loadavg()[0]!,
        errors: r.errors,
      };
      json.push(row);
      rows.push([
        String(step),
        String(r.open),
        String(queued),
        String(r.failed),
        `${r.seconds.toFixed(1)} s`,
        `${row.joinsPerS.toFixed(0)} /s`,
        `${row.joinP50.toFixed(0)} ms`,
        `${row.joinP99.toFixed(0)} ms`,
        `${row.rssMiB.toFixed(0)} MiB`,
        `${row.rssPerCustomerKiB.toFixed(1)} KiB`,
        `${row.heapPerCustomerKiB.toFixed(1)} KiB`,
        row.load1.toFixed(2),
      ]);
      process.stderr.write(`step ${step}: ${r.open} open, ${queued} queued, ${r.failed} failed, ${r.seconds.toFixed(1)} s\n`);
      if (r.failed > 0) {
        stopReason = `step ${step} had ${r.failed} failures: ${JSON.stringify(r.errors)}`;
        break;
      }
      if (r.seconds > STEP_MAX_S) {
        stopReason = `step ${step} took ${r.seconds.toFixed(0)} s (> BENCH_STEP_MAX_S ${STEP_MAX_S}): joins slow down as the queue grows`;
        break;
      }
    }

    console.log(
      `signaling bench: one node (memory store, file ledger), customers from a second process over loopback websocket, ` +
        `${process.env.BENCH_CLIENT_CONCURRENCY ?? 50} joins in flight; node ${process.version}, ${os.cpus().length} cores, ulimit -n ${fdLimit}, ` +
        `load average at start ${loadStart.map((l) => l.toFixed(2)).join(' ')}`,
    );
    console.log(`idle server after GC: RSS ${(base.rss / 2 ** 20).toFixed(0)} MiB, heap ${(base.heap / 2 ** 20).toFixed(0)} MiB`);
    const head = ['customers', 'open', 'queued', 'failed', 'step time', 'joins', 'join p50', 'join p99', 'server RSS', 'RSS/customer', 'heap/customer', 'load1'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i]!)).join('  ');
    console.log(line(head));
    console.log(widths.map((w) => '-'.repeat(w)).join('  '));
    for (const r of rows) console.log(line(r));
    if (json.length >= 2) {
      const first = json[0] as { joinP50: number; customers: number };
      const last = json[json.length - 1] as { joinP50: number; customers: number };
      console.log(
        `ratio: join p50 at ${last.customers} / at ${first.customers} customers = ${(last.joinP50 / first.joinP50).toFixed(1)}x ` +
          `for ${(last.customers / first.customers).toFixed(0)}x the queue`,
      );
    }
    console.log(`stopped: ${stopReason}; ${joinedTotal} joined in all, join p50 ${percentile(allJoins, 50).toFixed(0)} ms p99 ${percentile(allJoins, 99).toFixed(0)} ms`);
    if (process.env.BENCH_JSON === '1') console.log(JSON.stringify(json));
  } finally {
    child.send({ close: true });
    await new Promise((r) => child.once('exit', r));
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

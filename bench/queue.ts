/**
 * Queue benchmark: the real QueueRouter over the real stores, with a deep queue. For each store
 * (Redis on loopback, and the in-memory store in the same run for the ratio) it fills
 * BENCH_SESSIONS waiting sessions and brings BENCH_TELLERS tellers online, then measures:
 *
 *   - the routing pass alone (no free teller, so it only reads and sorts the queue), at 1/10 of
 *     the queue and at the full queue: the pass reads every queued session (router.route():
 *     queuedSessionIds() then getSession() for each), so its cost grows with the queue;
 *   - router.enqueue() of one more customer at full depth (it runs such a pass every time);
 *   - the claim, one teller at a time: setAvailability('available') (its routing pass offers the
 *     teller the head of the queue) then accept(offer): p50/p99 of each and of both;
 *   - sessions routed per second: every teller in a call ends it (WRAP_UP 0, so the teller is
 *     available again and a pass runs), waits for the next offer and accepts it, all at once, for
 *     BENCH_SECONDS or until half the queue has been served.
 *
 *   node --import tsx bench/queue.ts
 *
 * Environment:
 *   REDIS_URL       default redis://127.0.0.1:6379 (loopback only); keys get a unique prefix and
 *                   are deleted afterwards with SCAN + DEL
 *   BENCH_SESSIONS  waiting sessions (default 10000)
 *   BENCH_TELLERS   tellers (default 500)
 *   BENCH_SECONDS   length of the routed-per-second phase (default 10)
 *   BENCH_LEDGER=0  skip the extra run with the real file ledger as the evidence sink
 *   BENCH_JSON=1    also print the figures as one JSON line
 *
 * Evidence sink: the main runs use a no-op sink, because this bench is about the store and the
 * router; a third run (memory store, real signed file ledger in a temp dir, fsync per append)
 * prints what the evidence writes add to a claim, separately.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { BUSINESS_TYPES } from '../signaling/protocol.ts';
import { QueueRouter } from '../signaling/router.ts';
import type { StaffIdentity } from '../src/auth/staff-tokens.ts';
import { loadConfig } from '../src/config.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import { openServerLedger } from '../src/ledger/server-ledger.ts';
import { createLogger } from '../src/logger.ts';
import { openStore } from '../src/store/index.ts';
import type { OfferRecord, SessionRecord, StateStore } from '../src/store/types.ts';
import { percentile } from './util.ts';

let SESSIONS = 1000;
let TELLERS = 50;
let SECONDS = 1;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LANGUAGES = ['en', 'de', 'fr'] as const;
const log = createLogger('silent');

if (!/^rediss?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/\d+)?$/.test(REDIS_URL)) {
  throw new Error(`REDIS_URL must be a loopback address for this benchmark, got ${REDIS_URL}`);
}

interface RunResult {
  label: string;
  fillPerS: number;
  scanSmall: { n: number; p50: number };
  scanFull: { n: number; p50: number; p99: number };
  enqueueAtDepth: { p50: number; p99: number };
  pass: number[];
  accept: number[];
  claim: number[];
  unoffered: number;
  routed: number;
  routedSeconds: number;
  routedPerS: number;
  routeErrors: string[];
  queueAfter: number;
}

function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${text.padEnd(70)}`);
}

function sessionRecord(i: number, now: number, state: SessionRecord['state']): SessionRecord {
  return {
    id: randomUUID(),
    businessType: BUSINESS_TYPES[i % BUSINESS_TYPES.length]!,
    language: LANGUAGES[Math.floor(i / BUSINESS_TYPES.length) % LANGUAGES.length]!,
    priority: i % 10 === 0 ? 5 : 0,
    customerRef: `BENCH-${i}`,
    state,
    createdAt: now - 60_000,
    // Spread over the last 50 s so the sort has real work (and no one has aged a priority level).
    ...(state === 'queued' ? { queuedAt: now - 50_000 + (i * 50_000) / SESSIONS } : {}),
    tokenHash: randomUUID(),
    tokenExpiresAt: now + 3_600_000,
    tokenUsed: state !== 'created',
    declinedBy: {},
    createdBy: 'bench',
  };
}

/** Every teller speaks two of the three languages and handles every business type. */
function staff(i: number): StaffIdentity {
  return {
    id: `bench-teller-${i}`,
    displayName: `Teller ${i}`,
    role: 'teller',
    skills: { businessTypes: [...BUSINESS_TYPES], languages: [LANGUAGES[i % 3]!, LANGUAGES[(i + 1) % 3]!] },
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await fn();
  return [performance.now() - t0, r];
}

async function fill(store: StateStore, from: number, to: number): Promise<void> {
  const now = Date.now();
  const BATCH = 500;
  for (let i = from; i < to; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, to - i) }, async (_, k) => {
        const s = sessionRecord(i + k, now, 'queued');
        await store.createSession(s);
        await store.enqueue(s.id);
      }),
    );
    progress(`  filling: ${Math.min(to, i + BATCH)}/${SESSIONS}`);
  }
}

async function runOnce(label: string, store: StateStore, evidence: EvidenceSink): Promise<RunResult> {
  const router = new QueueRouter(
    store,
    evidence,
    // Offers never time out during the run; WRAP_UP 0 puts a teller back to available at hang-up.
    { mode: 'longest_idle', offerTimeoutMs: 600_000, maxMissedOffers: 3, wrapUpMs: 0, priorityAgeingS: 3600, declineCooldownMs: 600_000 },
    log,
  );
  const waiting = new Map<string, (o: OfferRecord) => void>();
  const pendingOffer = new Map<string, OfferRecord>();
  router.on('offer', (offer) => {
    const w = waiting.get(offer.tellerId);
    if (w) {
      waiting.delete(offer.tellerId);
      w(offer);
    } else pendingOffer.set(offer.tellerId, offer);
  });
  const nextOffer = (tellerId: string, timeoutMs: number): Promise<OfferRecord | undefined> => {
    const ready = pendingOffer.get(tellerId);
    if (ready) {
      pendingOffer.delete(tellerId);
      return Promise.resolve(ready);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(tellerId);
        resolve(undefined);
      }, timeoutMs);
      waiting.set(tellerId, (o) => {
        clearTimeout(timer);
        resolve(o);
      });
    });
  };

  try {
    // ---- fill, and the pure scan at 1/10 and at full depth ---------------------------------
    const small = Math.max(1, Math.floor(SESSIONS / 10));
    const fillStart = performance.now();
    await fill(store, 0, small);
    const scanSmall: number[] = [];
    for (let i = 0; i < 10; i++) scanSmall.push((await timed(() => router.route()))[0]);
    const fillMid = performance.now();
    await fill(store, small, SESSIONS);
    const fillPerS = SESSIONS / ((performance.now() - fillMid + (fillMid - fillStart)) / 1000);
    progress('  scanning');
    const scanFull: number[] = [];
    for (let i = 0; i < 10; i++) scanFull.push((await timed(() => router.route()))[0]);

    // ---- router.enqueue at full depth (no teller available yet: its pass offers nothing) ----
    const enq: number[] = [];
    for (let i = 0; i < 10; i++) {
      const s = sessionRecord(SESSIONS + i, Date.now(), 'created');
      await store.createSession(s);
      enq.push((await timed(() => router.enqueue(s.id)))[0]);
    }

    // ---- tellers online, then claims one teller at a time ------------------------------------
    for (let i = 0; i < TELLERS; i++) await router.tellerOnline(staff(i));
    const pass: number[] = [];
    const accept: number[] = [];
    const claim: number[] = [];
    const inCall = new Map<string, string>(); // teller → session
    let unoffered = 0;
    for (let i = 0; i < TELLERS; i++) {
      const id = staff(i).id;
      const [tPass] = await timed(() => router.setAvailability(id, 'available'));
      const offer = await nextOffer(id, 0);
      if (!offer) {
        unoffered++;
        continue;
      }
      const [tAccept, r] = await timed(() => router.accept(id, offer.id));
      inCall.set(id, r.session.id);
      pass.push(tPass);
      accept.push(tAccept);
      claim.push(tPass + tAccept);
      if (i % 20 === 0) progress(`  claims: ${i}/${TELLERS}`);
    }

    // ---- sessions routed per second: every teller ends the call, takes the next, at once ------
    const queuedAtStart = (await store.queuedSessionIds()).length;
    const cap = Math.floor(queuedAtStart / 2);
    let routed = 0;
    const routeErrors: string[] = [];
    const started = performance.now();
    const deadline = started + SECONDS * 1000;
    await Promise.all(
      [...inCall.keys()].map(async (tellerId) => {
        while (performance.now() < deadline && routed < cap) {
          try {
            const sessionId = inCall.get(tellerId)!;
            const offered = nextOffer(tellerId, deadline - performance.now() + 5000);
            await router.endCall(sessionId, tellerId, 'bench_hangup');
            const offer = await offered;
            if (!offer) return;
            const r = await router.accept(tellerId, offer.id);
            inCall.set(tellerId, r.session.id);
            routed++;
            if (routed % 50 === 0) progress(`  routed: ${routed}`);
          } catch (err) {
            routeErrors.push((err as Error).name + ': ' + (err as Error).message);
            return;
          }
        }
      }),
    );
    const routedSeconds = (performance.now() - started) / 1000;
    const queueAfter = (await store.queuedSessionIds()).length;
    progress('');
    if (process.stderr.isTTY) process.stderr.write('\r');

    return {
      label,
      fillPerS,
      scanSmall: { n: small, p50: percentile(scanSmall, 50) },
      scanFull: { n: SESSIONS + 0, p50: percentile(scanFull, 50), p99: percentile(scanFull, 99) },
      enqueueAtDepth: { p50: percentile(enq, 50), p99: percentile(enq, 99) },
      pass,
      accept,
      claim,
      unoffered,
      routed,
      routedSeconds,
      routedPerS: routed / routedSeconds,
      routeErrors: [...new Set(routeErrors)].map((e) => `${routeErrors.filter((x) => x === e).length}× ${e}`),
      queueAfter,
    };
  } finally {
    router.close();
  }
}

async function deleteKeys(prefix: string): Promise<number> {
  const redis = new Redis(REDIS_URL);
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

const noopSink = (): EvidenceSink => {
  let index = 0;
  return { append: async () => ({ index: index++ }) };
};

async function main(): Promise<void> {
  // Warm-up (JIT, zod, the store code paths) on a small memory queue, not reported, so the first
  // reported run does not pay for it.
  progress('warm-up');
  const warm = await openStore({ REDIS_URL: undefined, REDIS_KEY_PREFIX: 'unused:' }, log);
  await runOnce('warm-up', warm, noopSink());
  await warm.close();
  SESSIONS = Number(process.env.BENCH_SESSIONS ?? 10_000);
  TELLERS = Number(process.env.BENCH_TELLERS ?? 500);
  SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

  const load = os.loadavg();
  const results: RunResult[] = [];

  progress('memory store');
  const memory = await openStore({ REDIS_URL: undefined, REDIS_KEY_PREFIX: 'unused:' }, log);
  results.push(await runOnce('memory, no-op evidence', memory, noopSink()));
  await memory.close();

  const prefix = `vtbench:queue:${process.pid}:${randomUUID().slice(0, 8)}:`;
  let deleted = 0;
  try {
    progress('redis store');
    const redis = await openStore({ REDIS_URL, REDIS_KEY_PREFIX: prefix }, log);
    try {
      results.push(await runOnce('redis, no-op evidence', redis, noopSink()));
    } finally {
      await redis.close();
    }
  } finally {
    deleted = await deleteKeys(prefix);
  }

  if (process.env.BENCH_LEDGER !== '0') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vt-bench-queue-'));
    try {
      progress('memory store, file ledger');
      const config = loadConfig({ DATA_DIR: dir, LOG_LEVEL: 'silent' });
      const ledger = await openServerLedger(config, log);
      const store = await openStore({ REDIS_URL: undefined, REDIS_KEY_PREFIX: 'unused:' }, log);
      try {
        results.push(await runOnce('memory, file ledger evidence', store, ledger.evidence));
      } finally {
        await store.close();
        await ledger.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  // ---- report ----------------------------------------------------------------------------------
  const f = (v: number) => (Number.isNaN(v) ? '-' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  console.log(
    `queue bench: ${SESSIONS} waiting sessions, ${TELLERS} tellers, QueueRouter (longest idle), node ${process.version}, ` +
      `${os.cpus().length} cores, load average at start ${load.map((l) => l.toFixed(2)).join(' ')}, at end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  );
  const head = ['figure', ...results.map((r) => r.label)];
  const rows: string[][] = [
    ['fill (createSession + enqueue, 500 at once)', ...results.map((r) => `${f(r.fillPerS)} /s`)],
    [`routing pass, no free teller, ${results[0]!.scanSmall.n} queued  p50`, ...results.map((r) => `${f(r.scanSmall.p50)} ms`)],
    [`routing pass, no free teller, ${SESSIONS} queued  p50`, ...results.map((r) => `${f(r.scanFull.p50)} ms`)],
    [`  ratio full/small queue (10x the sessions)`, ...results.map((r) => `${(r.scanFull.p50 / r.scanSmall.p50).toFixed(1)}x`)],
    [`router.enqueue at ${SESSIONS} queued  p50`, ...results.map((r) => `${f(r.enqueueAtDepth.p50)} ms`)],
    [`router.enqueue at ${SESSIONS} queued  p99`, ...results.map((r) => `${f(r.enqueueAtDepth.p99)} ms`)],
    ['claim: setAvailability (its pass offers)  p50', ...results.map((r) => `${f(percentile(r.pass, 50))} ms`)],
    ['claim: setAvailability (its pass offers)  p99', ...results.map((r) => `${f(percentile(r.pass, 99))} ms`)],
    ['claim: accept(offer)  p50', ...results.map((r) => `${f(percentile(r.accept, 50))} ms`)],
    ['claim: accept(offer)  p99', ...results.map((r) => `${f(percentile(r.accept, 99))} ms`)],
    ['claim: available → in call  p50', ...results.map((r) => `${f(percentile(r.claim, 50))} ms`)],
    ['claim: available → in call  p99', ...results.map((r) => `${f(percentile(r.claim, 99))} ms`)],
    [`sessions routed/s (${TELLERS} tellers: hang up, next offer, accept)`, ...results.map((r) => `${f(r.routedPerS)} /s`)],
    ['  (routed, over seconds, queue left)', ...results.map((r) => `${r.routed} / ${r.routedSeconds.toFixed(1)} s / ${r.queueAfter}`)],
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));

  const mem = results[0]!;
  const red = results[1];
  if (red) {
    const ratio = (a: number, b: number) => (a / b).toFixed(1);
    console.log(
      `\nratio redis/memory: claim p50 ${ratio(percentile(red.claim, 50), percentile(mem.claim, 50))}x, p99 ${ratio(percentile(red.claim, 99), percentile(mem.claim, 99))}x; ` +
        `full-queue pass ${ratio(red.scanFull.p50, mem.scanFull.p50)}x; routed/s ${ratio(red.routedPerS, mem.routedPerS)}x`,
    );
  }
  const led = results.find((r) => r.label.includes('file ledger'));
  if (led) {
    console.log(
      `evidence (file ledger, fsync per append) adds to a claim: p50 ${f(percentile(led.claim, 50) - percentile(mem.claim, 50))} ms ` +
        `(${(percentile(led.claim, 50) / percentile(mem.claim, 50)).toFixed(1)}x the no-op claim)`,
    );
  }
  for (const r of results) {
    if (r.unoffered > 0) console.log(`${r.label}: ${r.unoffered} tellers were offered nothing by their pass`);
    for (const e of r.routeErrors) console.log(`${r.label}: routed phase error ${e}`);
  }
  console.log(`redis keys deleted afterwards (SCAN ${prefix}* + DEL): ${deleted}`);
  if (process.env.BENCH_JSON === '1') {
    console.log(JSON.stringify(results.map((r) => ({ ...r, pass: undefined, accept: undefined, claim: undefined, claimP50: percentile(r.claim, 50), claimP99: percentile(r.claim, 99) }))));
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

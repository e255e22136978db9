/**
 * Call-setup benchmark: how long from the customer pressing "join" to the first decoded frame of
 * the other side's video, on each side, and to the server's first face-match decision, over a
 * series of real calls through the real server (its own process, as `npm start` runs it) and
 * Debian's Chromium with a fake camera playing a real face whose ID photo every session carries;
 * and whether the server's memory grows per call.
 *
 *   node --import tsx bench/call-setup.ts
 *
 * Environment:
 *   BENCH_CALLS   calls measured after the warm-up (default 20)
 *   BENCH_WARMUP  calls before the measurement, not counted (default 3)
 *   BENCH_JSON=1  also print the figures as one JSON line
 *
 * The teller is automated and accepts as soon as the offer shows, so "join → accept" is routing
 * and signaling only, not a human. Pages are polled every 20 ms, which bounds the resolution.
 * Ratios are of phases measured in the same calls: how much of the wait is media set-up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildPages, callStats, launchChromium, repoRoot, tempDir } from '../test/e2e/browser.ts';
import { makeLivenessVideos } from '../test/e2e/fixtures/liveness-videos.ts';
import { freePort, percentile } from './util.ts';

const CALLS = Number(process.env.BENCH_CALLS ?? 20);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const API_KEY = 'bench-bank-api-key-0123456789';
const tid = (id: string) => `[data-testid="${id}"]`;

interface CallTimes {
  /** ms from the customer's click on "join". */
  offer: number;
  accepted: number;
  customerFirstFrame: number;
  tellerFirstFrame: number;
  /** The server's first analysed frame, and its first 'match' decision, as the teller console received them. */
  firstAnalysis: number;
  firstMatch: number;
}

async function startServer(dataDir: string): Promise<{ url: string; proc: ChildProcess }> {
  const port = await freePort();
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: repoRoot,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      API_KEYS: `bench:${API_KEY}`,
      LOG_LEVEL: 'warn',
      WRAP_UP_MS: '0',
      MEDIA_WORKERS: '1',
      IDENTITY_WORKERS: '1',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`the server exited with ${proc.exitCode}`);
    const ok = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ok) return { url, proc };
    await sleep(200);
  }
  throw new Error('the server did not become ready in 60 s');
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** RSS of the server and its mediasoup worker children. */
function serverRss(pid: number): { node: number; workers: number } {
  let workers = 0;
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    for (const c of children) workers += rssMiB(Number(c));
  } catch {
    // no children file on this kernel: workers stay 0 and the line says so
  }
  return { node: rssMiB(pid), workers };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function firstFrameAt(page: Page, since: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = await callStats(page);
    if ((s?.inbound.video?.framesDecoded ?? 0) > 0) return Date.now() - since;
    await sleep(20);
  }
  throw new Error('no decoded frame within 30 s');
}

async function oneCall(browser: Browser, url: string, teller: Page, referencePhoto: Buffer): Promise<CallTimes> {
  const res = await fetch(`${url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': API_KEY },
    body: JSON.stringify({ businessType: 'consultation', language: 'en', priority: 0, customerRef: 'BENCH-1', referencePhoto: referencePhoto.toString('base64') }),
  });
  if (res.status !== 201) throw new Error(`POST /api/sessions: ${res.status} ${await res.text()}`);
  const { joinUrl } = (await res.json()) as { joinUrl: string };
  const context: BrowserContext = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
  try {
    await context.grantPermissions(['camera', 'microphone'], { origin: url });
    const customer = await context.newPage();
    await customer.goto(joinUrl);
    await customer.click(tid('consent'));
    await customer.waitForSelector(`${tid('join')}:not([disabled])`);

    const t0 = Date.now();
    await customer.click(tid('join'));
    await teller.waitForSelector(`${tid('accept')}:not([disabled])`, { state: 'visible', timeout: 30_000 });
    const offer = Date.now() - t0;
    await teller.click(tid('accept'));
    const accepted = Date.now() - t0;
    const [customerFirstFrame, tellerFirstFrame] = await Promise.all([firstFrameAt(customer, t0), firstFrameAt(teller, t0)]);
    await teller.waitForSelector(`${tid('identity')}[data-first-match-at]`, { state: 'attached', timeout: 30_000 });
    const stamps = await teller.$eval(tid('identity'), (el) => [Number((el as HTMLElement).dataset.firstReportAt), Number((el as HTMLElement).dataset.firstMatchAt)]);
    const firstAnalysis = stamps[0]! - t0;
    const firstMatch = stamps[1]! - t0;

    await customer.click(tid('hangup'));
    await teller.waitForSelector(tid('call-ended'), { state: 'visible' });
    return { offer, accepted, customerFirstFrame, tellerFirstFrame, firstAnalysis, firstMatch };
  } finally {
    await context.close();
  }
}

async function main(): Promise<void> {
  const work = tempDir('vt-bench-call-');
  // A real face (the still video of the liveness tests) and its ID photo, so every call also runs
  // the server's identity checks as a real call with a registered photo does.
  const videos = makeLivenessVideos();
  const y4m = videos.still;
  const referencePhoto = readFileSync(videos.reference);
  await buildPages();
  const { url, proc } = await startServer(path.join(work, 'data'));
  let browser: Browser | undefined;
  try {
    browser = await launchChromium(y4m);
    const tellerContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await tellerContext.grantPermissions(['camera', 'microphone'], { origin: url });
    const teller = await tellerContext.newPage();
    await teller.goto(`${url}/teller/`);
    await teller.fill(tid('username'), 'bob');
    await teller.fill(tid('password'), 'bob-demo-pass');
    await teller.click(tid('login'));
    await teller.waitForSelector(`${tid('teller-state')}[data-state="away"], ${tid('teller-state')}[data-state="offline"]`);
    await teller.click(tid('available'));
    await teller.waitForSelector(`${tid('teller-state')}[data-state="available"]`);

    const rssStart = serverRss(proc.pid!);
    for (let i = 0; i < WARMUP; i++) await oneCall(browser, url, teller, referencePhoto);
    await sleep(1000);
    const rssWarm = serverRss(proc.pid!);
    const calls: CallTimes[] = [];
    for (let i = 0; i < CALLS; i++) {
      calls.push(await oneCall(browser, url, teller, referencePhoto));
      process.stderr.write(`\rcall ${i + 1}/${CALLS}`);
    }
    process.stderr.write('\n');
    await sleep(1000);
    const rssEnd = serverRss(proc.pid!);

    const row = (name: string, values: number[]) =>
      console.log(`${name.padEnd(44)} p50 ${String(percentile(values, 50)).padStart(5)} ms   p95 ${String(percentile(values, 95)).padStart(5)} ms`);
    const both = calls.map((c) => Math.max(c.customerFirstFrame, c.tellerFirstFrame));
    const media = calls.map((c, i) => both[i]! - c.accepted);
    console.log(`call set-up over ${CALLS} calls (after ${WARMUP} warm-up), one server process, one mediasoup worker, Chromium ${browser.version()}`);
    row('join → offer shown to the teller', calls.map((c) => c.offer));
    row('join → teller accepted', calls.map((c) => c.accepted));
    row('join → first remote frame, customer side', calls.map((c) => c.customerFirstFrame));
    row('join → first remote frame, teller side', calls.map((c) => c.tellerFirstFrame));
    row('join → first frames on both sides', both);
    row('accept → first frames on both sides (media)', media);
    row('join → first frame analysed by the server', calls.map((c) => c.firstAnalysis));
    row('join → first face-match decision (match)', calls.map((c) => c.firstMatch));
    row('first analysed frame → first match decision', calls.map((c) => c.firstMatch - c.firstAnalysis));
    console.log(
      `ratio: media set-up / join-to-both-frames  p50 ${(percentile(media, 50) / percentile(both, 50)).toFixed(2)}` +
        `   p95/p50 of join-to-both-frames ${(percentile(both, 95) / percentile(both, 50)).toFixed(2)}`,
    );
    const perCallKiB = ((rssEnd.node + rssEnd.workers - rssWarm.node - rssWarm.workers) * 1024) / CALLS;
    console.log(
      `server RSS (MiB): node ${rssStart.node.toFixed(1)} → ${rssWarm.node.toFixed(1)} after warm-up → ${rssEnd.node.toFixed(1)} after ${CALLS} calls; ` +
        `mediasoup worker ${rssStart.workers.toFixed(1)} → ${rssWarm.workers.toFixed(1)} → ${rssEnd.workers.toFixed(1)}; ` +
        `growth per call after warm-up ${perCallKiB.toFixed(0)} KiB`,
    );
    if (process.env.BENCH_JSON === '1') console.log(JSON.stringify({ calls, rssStart, rssWarm, rssEnd }));
  } finally {
    await browser?.close();
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

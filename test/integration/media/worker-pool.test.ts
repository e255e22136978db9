/**
 * MediaWorkerPool against real mediasoup-worker processes: start, spreading of routers, ports,
 * close, and the death and replacement of a worker.
 */
import '../../../media/worker-bin.ts';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { CallMedia, type CallMediaClosedEvent } from '../../../media/call-media.ts';
import { MediaError } from '../../../media/errors.ts';
import { cachedWorkerBinPath, resolveWorkerBin, WORKER_BUILD_REV, workerBinResolution } from '../../../media/worker-bin.ts';
import type { MediaWorkerPool, WorkerDiedEvent, WorkerReplacedEvent } from '../../../media/worker-pool.ts';
import { captureLogger, clientDtlsParameters, opusParameters, startPool, sumOf } from './fixtures.ts';

const pools: MediaWorkerPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

async function pool(opts: Parameters<typeof startPool>[0]): Promise<MediaWorkerPool> {
  const p = await startPool(opts);
  pools.push(p);
  return p;
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const call = (p: MediaWorkerPool, n: number) => CallMedia.create(p, { callId: `c${n}`, sessionId: `s${n}`, logger: captureLogger('silent').logger });

describe('worker binary resolution', () => {
  it('prefers MEDIASOUP_WORKER_BIN, then the build cache for the installed version, then mediasoup’s default', () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'vt-home-'));
    try {
      const version = workerBinResolution.mediasoupVersion;
      expect(version).toMatch(/^3\.15\./);
      expect(resolveWorkerBin({ MEDIASOUP_WORKER_BIN: '/opt/x/mediasoup-worker' }, home)).toMatchObject({ path: '/opt/x/mediasoup-worker', source: 'env' });
      const fallback = resolveWorkerBin({}, home);
      expect(fallback.source).toBe('default');
      expect(fallback.path).toMatch(/node_modules\/mediasoup\/worker\/out\/Release\/mediasoup-worker$/);
      const cached = cachedWorkerBinPath(version, home);
      expect(cached).toBe(path.join(home, '.cache', 'videoteller', `mediasoup-worker-${version}-${WORKER_BUILD_REV}`, 'mediasoup-worker'));
      mkdirSync(path.dirname(cached), { recursive: true });
      writeFileSync(cached, '#!/bin/sh\n');
      expect(resolveWorkerBin({}, home).source).toBe('default'); // not executable yet
      chmodSync(cached, 0o755);
      expect(resolveWorkerBin({}, home)).toMatchObject({ path: cached, source: 'cache' });
      // VIDEOTELLER_CACHE moves the cache root, as it does for the build script.
      const root = path.join(home, 'elsewhere');
      expect(resolveWorkerBin({ VIDEOTELLER_CACHE: root }, home).source).toBe('default');
      const moved = cachedWorkerBinPath(version, home, root);
      expect(moved).toBe(path.join(root, `mediasoup-worker-${version}-${WORKER_BUILD_REV}`, 'mediasoup-worker'));
      mkdirSync(path.dirname(moved), { recursive: true });
      writeFileSync(moved, '#!/bin/sh\n', { mode: 0o755 });
      expect(resolveWorkerBin({ VIDEOTELLER_CACHE: root }, home)).toMatchObject({ path: moved, source: 'cache' });
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('looks for the build revision the build script makes', () => {
    const script = readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../scripts/build-mediasoup-worker.sh'), 'utf8');
    expect(script).toMatch(new RegExp(`^WORKER_BUILD_REV=${WORKER_BUILD_REV}$`, 'm'));
  });

  it('set MEDIASOUP_WORKER_BIN before mediasoup was loaded', () => {
    expect(process.env['MEDIASOUP_WORKER_BIN']).toBe(workerBinResolution.path);
  });
});

describe('MediaWorkerPool', () => {
  it('starts N workers, each with a WebRtcServer on its own UDP and TCP port of the range', async () => {
    const { logger, lines } = captureLogger('info');
    const p = await pool({ numWorkers: 2, logger });
    const stats = p.stats();
    expect(stats).toHaveLength(2);
    expect(stats.map((w) => w.index)).toEqual([0, 1]);
    expect(new Set(stats.map((w) => w.pid)).size).toBe(2);
    for (const w of stats) {
      expect(w).toMatchObject({ routers: 0, transports: 0 });
      expect(isAlive(w.pid)).toBe(true);
    }
    const ports = p.workers().flatMap((w) => [...w.ports.udp, ...w.ports.tcp]);
    expect(ports).toHaveLength(4);
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(40000);
      expect(port).toBeLessThanOrEqual(49999);
    }
    expect(new Set(p.workers().flatMap((w) => w.ports.udp)).size).toBe(2);
    expect(lines.some((l) => l.msg === 'media workers started')).toBe(true);
  });

  it('lets two pools (two server processes) share one narrow port range side by side', async () => {
    const { logger } = captureLogger('silent');
    const range = { rtcMinPort: 45100, rtcMaxPort: 45103 };
    const a = await pool({ numWorkers: 2, logger, ...range });
    const b = await pool({ numWorkers: 2, logger, ...range });
    const udp = [...a.workers(), ...b.workers()].flatMap((w) => w.ports.udp);
    expect(new Set(udp).size).toBe(4);
    for (const port of udp) expect(port).toBeGreaterThanOrEqual(45100);
  });

  it('spreads routers over the workers, sequentially and when calls start at the same moment', async () => {
    const { logger } = captureLogger('silent');
    const p = await pool({ numWorkers: 2, logger });
    expect(p.leastLoaded().index).toBe(0);
    const first = await call(p, 1);
    expect(p.leastLoaded().index).toBe(1);
    const second = await call(p, 2);
    expect(first.worker.index).not.toBe(second.worker.index);
    expect(p.stats().map((w) => w.routers)).toEqual([1, 1]);
    // Four at once: the pending reservations spread them two and two.
    const burst = await Promise.all([3, 4, 5, 6].map((n) => call(p, n)));
    expect(p.stats().map((w) => w.routers)).toEqual([3, 3]);
    // Closing calls on worker 0 makes it the least loaded again.
    for (const c of [first, second, ...burst].filter((c) => c.worker.index === 0).slice(0, 2)) c.close();
    expect(p.stats().map((w) => w.routers)).toEqual([1, 3]);
    expect(p.leastLoaded().index).toBe(0);
  });

  it('counts routers and transports from mediasoup events, and close() leaves nothing', async () => {
    const { logger } = captureLogger('silent');
    const p = await pool({ numWorkers: 2, logger });
    const calls = await Promise.all([1, 2, 3].map((n) => call(p, n)));
    for (const c of calls) {
      await c.createTransport('customer', 'send');
      await c.createTransport('teller', 'recv');
    }
    expect(sumOf(p.stats(), 'routers')).toBe(3);
    expect(sumOf(p.stats(), 'transports')).toBe(6);
    const closed: CallMediaClosedEvent[] = [];
    for (const c of calls) c.on('closed', (e) => closed.push(e));
    const pids = p.stats().map((w) => w.pid);
    await p.close();
    await p.close(); // idempotent
    expect(p.stats()).toEqual([]);
    expect(closed).toEqual([{ reason: 'worker_closed' }, { reason: 'worker_closed' }, { reason: 'worker_closed' }]);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    expect(() => p.leastLoaded()).toThrow(MediaError);
    await expect(call(p, 9)).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('replaces a killed worker, reports its calls, and closes their media', async () => {
    const { logger, lines } = captureLogger('info');
    const p = await pool({ numWorkers: 2, logger });
    const calls = await Promise.all([1, 2, 3, 4].map((n) => call(p, n)));
    for (const c of calls) {
      const t = await c.createTransport('customer', 'send');
      await c.connectTransport('customer', t.id, clientDtlsParameters());
      await c.produce('customer', t.id, 'audio', opusParameters());
    }
    const victim = p.workers()[0]!;
    const onVictim = calls.filter((c) => c.workerPid === victim.pid);
    const elsewhere = calls.filter((c) => c.workerPid !== victim.pid);
    expect(onVictim).toHaveLength(2);
    const closed = new Map<string, CallMediaClosedEvent>();
    for (const c of calls) c.on('closed', (e) => closed.set(c.callId, e));

    const died = once(p, 'workerdied') as Promise<[WorkerDiedEvent]>;
    const replaced = once(p, 'workerreplaced') as Promise<[WorkerReplacedEvent]>;
    process.kill(victim.pid, 'SIGKILL');

    const [event] = await died;
    expect(event).toMatchObject({ index: victim.index, pid: victim.pid });
    expect(event.error).toBeInstanceOf(Error);
    expect(event.callIds.sort()).toEqual(onVictim.map((c) => c.callId).sort());
    expect(event.sessionIds.sort()).toEqual(onVictim.map((c) => c.sessionId).sort());
    // Their media is gone, and they said so; the other worker's calls are untouched.
    for (const c of onVictim) {
      expect(closed.get(c.callId)).toEqual({ reason: 'worker_died' });
      expect(c.closed).toBe(true);
      await expect(c.createTransport('teller', 'send')).rejects.toMatchObject({ code: 'invalid_state' });
    }
    for (const c of elsewhere) expect(c.closed).toBe(false);
    const errorLine = lines.find((l) => l.level === 50 && l.msg.startsWith('media worker died'));
    expect(errorLine).toMatchObject({ pid: victim.pid, callIds: expect.arrayContaining(event.callIds) });

    const [rep] = await replaced;
    expect(rep).toMatchObject({ index: victim.index, oldPid: victim.pid });
    expect(rep.pid).not.toBe(victim.pid);
    const stats = p.stats();
    expect(stats).toHaveLength(2);
    expect(stats.find((w) => w.index === victim.index)).toMatchObject({ pid: rep.pid, routers: 0, transports: 0 });
    expect(sumOf(stats, 'routers')).toBe(2);
    // The new worker takes the next calls, and they work.
    const fresh = await call(p, 10);
    expect(fresh.workerPid).toBe(rep.pid);
    const t = await fresh.createTransport('teller', 'send');
    expect((t.iceCandidates as Array<{ address: string }>)[0]?.address).toBe('127.0.0.1');
    for (const c of elsewhere) await expect(c.createTransport('teller', 'recv')).resolves.toMatchObject({ id: expect.any(String) });
  });
});

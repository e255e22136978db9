// Must stay the first import: sets MEDIASOUP_WORKER_BIN before mediasoup is evaluated (see worker-bin.ts).
import { isExecutable, loadedTooLate, workerBinResolution } from './worker-bin.ts';
import { EventEmitter } from 'node:events';
import mediasoup from 'mediasoup';
import type { types as ms } from 'mediasoup';
import type { Logger } from '../src/logger.ts';
import { MediaError, toMediaError } from './errors.ts';

export type MediasoupLogLevel = 'debug' | 'warn' | 'error' | 'none';

export interface MediaWorkerPoolOptions {
  /** How many mediasoup-worker processes (one per core is the usual choice). */
  numWorkers: number;
  logLevel: MediasoupLogLevel;
  /** Local address the WebRtcServers bind (RTC_LISTEN_IP). */
  listenIp: string;
  /** Address put in ICE candidates instead of listenIp (public IP or DNS name behind NAT). */
  announcedAddress?: string | undefined;
  /** Inclusive RTC port range (RTC_MIN_PORT..RTC_MAX_PORT). */
  rtcMinPort: number;
  rtcMaxPort: number;
  logger: Logger;
  /** How often each worker's CPU use is sampled for leastLoaded()'s tie-break; 0 disables. */
  cpuSampleIntervalMs?: number;
}

/** What every router of the pool carries; the pool reports a dead worker's calls from it. */
export type CallRouterAppData = { callId: string; sessionId: string };

/** One live worker of the pool, as seen from outside (read-only). */
export interface MediaWorker {
  /** Slot number, 0..numWorkers-1; a replacement worker takes the dead one's slot. */
  readonly index: number;
  readonly pid: number;
  readonly worker: ms.Worker;
  /** The worker's WebRtcServer: every WebRtcTransport of the worker listens through it. */
  readonly webRtcServer: ms.WebRtcServer;
  /** Ports the WebRtcServer was given by the worker within the configured range. */
  readonly ports: { readonly udp: readonly number[]; readonly tcp: readonly number[] };
  /** Routers still open on this worker. */
  readonly routerCount: number;
  /** Transports (any type) still open on this worker. */
  readonly transportCount: number;
  /** Recent CPU use of the worker process, in cores (0.25 = a quarter of one core), sampled. */
  readonly cpuLoad: number;
}

export interface WorkerStats {
  index: number;
  pid: number;
  /** Routers still open. */
  routers: number;
  /** Transports still open (WebRTC and any other type). */
  transports: number;
}

export interface WorkerDiedEvent {
  index: number;
  pid: number;
  error: Error;
  /** Calls whose routers were on the dead worker; their media is gone (each CallMedia also emits 'closed'). */
  callIds: string[];
  sessionIds: string[];
}

export interface WorkerReplacedEvent {
  index: number;
  oldPid: number;
  pid: number;
}

export type MediaWorkerPoolEvents = {
  workerdied: [WorkerDiedEvent];
  workerreplaced: [WorkerReplacedEvent];
};

const REPLACE_BACKOFF_MS = [0, 500, 1000, 2000, 5000, 10_000, 30_000];

class WorkerSlot implements MediaWorker {
  readonly routers = new Set<ms.Router>();
  readonly transportIds = new Set<string>();
  /** routerId → call; kept (not deleted) for routers closed by the worker's death. */
  readonly calls = new Map<string, CallRouterAppData>();
  /** Routers being created here right now (counted as load so concurrent calls spread). */
  pending = 0;
  cpuLoad = 0;
  lastCpuMs: number | undefined;
  lastSampleAt = 0;

  constructor(
    readonly index: number,
    readonly worker: ms.Worker,
    readonly webRtcServer: ms.WebRtcServer,
    readonly ports: { udp: number[]; tcp: number[] },
  ) {}

  get pid(): number {
    return this.worker.pid;
  }
  get routerCount(): number {
    return this.routers.size;
  }
  get transportCount(): number {
    return this.transportIds.size;
  }
}

/**
 * The mediasoup workers of this node: one Worker process per configured count, each with its own
 * WebRtcServer (one UDP and one TCP port shared by all of the worker's WebRTC transports).
 *
 * Ports: each WebRtcServer listen info gets the whole configured range as `portRange`, and the
 * worker binds a random free port in it, trying the next one when a port is in use (mediasoup
 * 3.15's PortManager). We do not split the range by worker index: splitting would make two server
 * processes on one machine (a rolling restart, two nodes on one host, a test server next to a dev
 * server) collide on the same fixed ports, while random-free-port binding lets any number of
 * processes share one range without coordination. Only the range has to be opened in the
 * firewall; it needs at least one port per worker and protocol per process.
 *
 * A worker that dies is logged at error, its routers are closed by mediasoup (every CallMedia on it
 * emits 'closed'), the pool emits 'workerdied' with the calls that were on it, and a new worker is
 * started in its slot (with backoff if that fails), then 'workerreplaced'.
 */
export class MediaWorkerPool extends EventEmitter<MediaWorkerPoolEvents> {
  /** Where the pool's transports listen; a later PlainTransport (frame tap) should use the same. */
  readonly network: { readonly listenIp: string; readonly announcedAddress: string | undefined; readonly portRange: { min: number; max: number } };
  private readonly slots: (WorkerSlot | undefined)[];
  private readonly log: Logger;
  private closed = false;
  private sampler: NodeJS.Timeout | undefined;
  private readonly replacing = new Set<number>();
  private readonly replaceTimers = new Set<NodeJS.Timeout>();
  /** Workers being started (at start or as replacements), so close() can wait for them too. */
  private readonly spawning = new Set<Promise<unknown>>();

  private constructor(private readonly opts: MediaWorkerPoolOptions) {
    super();
    this.log = opts.logger;
    this.network = {
      listenIp: opts.listenIp,
      announcedAddress: opts.announcedAddress,
      portRange: { min: opts.rtcMinPort, max: opts.rtcMaxPort },
    };
    this.slots = new Array<WorkerSlot | undefined>(opts.numWorkers).fill(undefined);
  }

  /** Starts every worker (in parallel) and its WebRtcServer; if any fails, closes the rest and throws. */
  static async start(opts: MediaWorkerPoolOptions): Promise<MediaWorkerPool> {
    if (!Number.isInteger(opts.numWorkers) || opts.numWorkers < 1) throw new Error(`numWorkers must be a positive integer, got ${opts.numWorkers}`);
    if (opts.rtcMinPort > opts.rtcMaxPort) throw new Error('rtcMinPort must not exceed rtcMaxPort');
    if (opts.rtcMaxPort - opts.rtcMinPort + 1 < opts.numWorkers) {
      throw new Error(`the RTC port range ${opts.rtcMinPort}-${opts.rtcMaxPort} has fewer ports than the ${opts.numWorkers} workers need`);
    }
    const bin = mediasoup.workerBin;
    if (!isExecutable(bin)) {
      throw new Error(
        `mediasoup-worker not found or not executable at ${bin} (chosen from ${workerBinResolution.source === 'env' ? 'MEDIASOUP_WORKER_BIN' : workerBinResolution.source}); ` +
          'build it with scripts/build-mediasoup-worker.sh (npm run setup), or set MEDIASOUP_WORKER_BIN',
      );
    }
    const pool = new MediaWorkerPool(opts);
    if (loadedTooLate && bin !== workerBinResolution.path) {
      pool.log.warn({ workerBin: bin, wanted: workerBinResolution.path }, 'mediasoup was loaded before media/worker-bin.ts: using its own choice of worker binary');
    }
    if ((opts.listenIp === '0.0.0.0' || opts.listenIp === '::') && !opts.announcedAddress) {
      pool.log.warn({ listenIp: opts.listenIp }, 'RTC_LISTEN_IP is a wildcard and RTC_ANNOUNCED_ADDRESS is not set: ICE candidates will not be reachable');
    }
    pool.routeMediasoupLogs();
    try {
      await Promise.all(pool.slots.map(async (_, index) => pool.install(await pool.spawn(index))));
    } catch (err) {
      await pool.close();
      throw err;
    }
    const interval = opts.cpuSampleIntervalMs ?? 5000;
    if (interval > 0) {
      pool.sampler = setInterval(() => pool.sampleCpu(), interval);
      pool.sampler.unref();
    }
    pool.log.info(
      { workers: pool.stats().map((w) => w.pid), workerBin: bin, binFrom: workerBinResolution.source, mediasoup: mediasoup.version },
      'media workers started',
    );
    return pool;
  }

  /** Number of configured worker slots (live or being replaced). */
  get size(): number {
    return this.slots.length;
  }

  /** The live workers, by slot. */
  workers(): MediaWorker[] {
    return this.slots.filter((s): s is WorkerSlot => s !== undefined);
  }

  /**
   * The live worker with the fewest routers (including routers being created); ties go to the lower
   * recent CPU use (sampled every few seconds, in 5 % buckets so noise does not decide), then the
   * lower slot. Throws MediaError('unavailable') if no worker is alive (all being replaced) or the
   * pool is closed.
   */
  leastLoaded(): MediaWorker {
    return this.pick();
  }

  /**
   * Creates a router for a call on the least-loaded worker. Prefer this to
   * `leastLoaded().worker.createRouter()`: the chosen worker is counted as loaded while the router
   * is being created, so calls set up at the same moment spread over the workers.
   */
  async createRouter(appData: CallRouterAppData, mediaCodecs: ms.RtpCodecCapability[]): Promise<{ router: ms.Router<CallRouterAppData>; worker: MediaWorker }> {
    const slot = this.pick();
    slot.pending++;
    try {
      const router = await slot.worker.createRouter<CallRouterAppData>({ mediaCodecs, appData });
      return { router, worker: slot };
    } catch (err) {
      if (slot.worker.closed) throw new MediaError('unavailable', 'the media worker went away; try again', { cause: err });
      throw toMediaError(err, 'creating the call router');
    } finally {
      slot.pending--;
    }
  }

  /** Per live worker: open routers and transports (tracked from mediasoup's observer events). */
  stats(): WorkerStats[] {
    return this.workers().map((w) => ({ index: w.index, pid: w.pid, routers: w.routerCount, transports: w.transportCount }));
  }

  /**
   * Closes every worker (their routers and transports with them) and stops replacing dead ones.
   * Idempotent; resolves when the worker processes have exited (at most ~3 s per worker). Callers
   * that do not need to wait may ignore the promise; it never rejects.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      if (this.sampler) clearInterval(this.sampler);
      for (const t of this.replaceTimers) clearTimeout(t);
      this.replaceTimers.clear();
    }
    const exiting: Promise<void>[] = [];
    for (const [i, slot] of this.slots.entries()) {
      if (!slot) continue;
      this.slots[i] = undefined;
      exiting.push(closeWorker(slot.worker));
    }
    // A worker still starting is closed by install() once it is up (the pool is closed).
    await Promise.all([...exiting, ...this.spawning]);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // -------------------------------------------------------------------------------------------

  private pick(): WorkerSlot {
    if (this.closed) throw new MediaError('unavailable', 'media is shutting down');
    let best: WorkerSlot | undefined;
    for (const slot of this.slots) {
      if (!slot || slot.worker.closed) continue;
      if (!best || compareLoad(slot, best) < 0) best = slot;
    }
    if (!best) throw new MediaError('unavailable', 'no media worker is available right now; try again shortly');
    return best;
  }

  private spawn(index: number): Promise<WorkerSlot> {
    const spawning = this.startWorker(index);
    const settled = spawning.then(
      (slot) => (this.closed ? closeWorker(slot.worker) : undefined),
      () => undefined,
    );
    this.spawning.add(settled);
    void settled.finally(() => this.spawning.delete(settled));
    return spawning;
  }

  private async startWorker(index: number): Promise<WorkerSlot> {
    const { logLevel, listenIp, announcedAddress, rtcMinPort, rtcMaxPort } = this.opts;
    const worker = await mediasoup.createWorker<{ index: number }>({
      logLevel,
      logTags: logLevel === 'debug' ? ['info', 'ice', 'dtls', 'rtp', 'srtp', 'rtcp', 'rtx', 'bwe', 'score'] : [],
      // Deprecated in 3.15 but still the fallback range of any transport created without
      // port/portRange (e.g. a later PlainTransport); keeps those inside the opened range too.
      rtcMinPort,
      rtcMaxPort,
      appData: { index },
    });
    try {
      const portRange = { min: rtcMinPort, max: rtcMaxPort };
      const webRtcServer = await worker.createWebRtcServer({
        listenInfos: [
          { protocol: 'udp', ip: listenIp, announcedAddress, portRange },
          { protocol: 'tcp', ip: listenIp, announcedAddress, portRange },
        ],
      });
      const dump = await webRtcServer.dump();
      return new WorkerSlot(index, worker, webRtcServer, {
        udp: dump.udpSockets.map((s) => s.port),
        tcp: dump.tcpServers.map((s) => s.port),
      });
    } catch (err) {
      await closeWorker(worker);
      throw err;
    }
  }

  /** Puts a started worker into its slot and watches it. */
  private install(slot: WorkerSlot): void {
    if (this.closed) {
      void closeWorker(slot.worker);
      return;
    }
    this.slots[slot.index] = slot;
    const { worker } = slot;
    worker.observer.on('newrouter', (router) => {
      slot.routers.add(router);
      const appData = router.appData as Partial<CallRouterAppData>;
      if (typeof appData.callId === 'string') slot.calls.set(router.id, { callId: appData.callId, sessionId: String(appData.sessionId ?? '') });
      router.observer.on('newtransport', (transport) => {
        slot.transportIds.add(transport.id);
        transport.observer.once('close', () => slot.transportIds.delete(transport.id));
      });
      router.observer.once('close', () => {
        slot.routers.delete(router);
        // A router closed by the worker's death stays listed: 'workerdied' reports its call.
        if (!worker.died) slot.calls.delete(router.id);
      });
    });
    worker.on('died', (error) => this.onDied(slot, error));
    this.log.info({ worker: slot.index, pid: slot.pid, udpPorts: slot.ports.udp, tcpPorts: slot.ports.tcp }, 'media worker running');
  }

  private onDied(slot: WorkerSlot, error: Error): void {
    if (this.slots[slot.index] === slot) this.slots[slot.index] = undefined;
    const calls = [...slot.calls.values()];
    slot.calls.clear();
    this.log.error(
      { err: error, worker: slot.index, pid: slot.pid, callIds: calls.map((c) => c.callId) },
      'media worker died: its calls lost their media; starting a replacement',
    );
    this.emit('workerdied', {
      index: slot.index,
      pid: slot.pid,
      error,
      callIds: calls.map((c) => c.callId),
      sessionIds: calls.map((c) => c.sessionId),
    });
    this.replace(slot.index, slot.pid, 0);
  }

  private replace(index: number, oldPid: number, attempt: number): void {
    if (this.closed || this.replacing.has(index)) return;
    this.replacing.add(index);
    const delay = REPLACE_BACKOFF_MS[Math.min(attempt, REPLACE_BACKOFF_MS.length - 1)]!;
    const timer = setTimeout(() => {
      this.replaceTimers.delete(timer);
      this.spawn(index).then(
        (slot) => {
          this.replacing.delete(index);
          if (this.closed) {
            void closeWorker(slot.worker);
            return;
          }
          this.install(slot);
          this.log.warn({ worker: index, oldPid, pid: slot.pid }, 'media worker replaced');
          this.emit('workerreplaced', { index, oldPid, pid: slot.pid });
        },
        (err: unknown) => {
          this.replacing.delete(index);
          this.log.error({ err, worker: index, attempt: attempt + 1 }, 'could not start a replacement media worker; retrying');
          this.replace(index, oldPid, attempt + 1);
        },
      );
    }, delay);
    this.replaceTimers.add(timer);
  }

  /** Refreshes each worker's recent CPU use (one cheap request per worker). */
  private sampleCpu(): void {
    for (const slot of this.slots) {
      if (!slot || slot.worker.closed) continue;
      slot.worker.getResourceUsage().then(
        (ru) => {
          const now = Date.now();
          const cpuMs = ru.ru_utime + ru.ru_stime;
          if (slot.lastCpuMs !== undefined && now > slot.lastSampleAt) slot.cpuLoad = Math.max(0, (cpuMs - slot.lastCpuMs) / (now - slot.lastSampleAt));
          slot.lastCpuMs = cpuMs;
          slot.lastSampleAt = now;
        },
        () => undefined, // the worker is closing or died; its slot goes away
      );
    }
  }

  /**
   * mediasoup's own log lines (Node side, and the worker's lines at MEDIASOUP_LOG_LEVEL) into pino.
   * mediasoup keeps one set of listeners per process: the last pool started wins.
   */
  private routeMediasoupLogs(): void {
    const log = this.log.child({ component: 'mediasoup' });
    mediasoup.setLogEventListeners({
      ...(this.opts.logLevel === 'debug' ? { ondebug: (ns: string, msg: string) => log.debug({ ns }, msg) } : {}),
      onwarn: (ns, msg) => log.warn({ ns }, msg),
      onerror: (ns, msg, err) => log.error({ ns, ...(err ? { err } : {}) }, msg),
    });
  }
}

/** Fewer routers (counting those being created) first, then lower CPU (5 % buckets), then lower slot. */
function compareLoad(a: WorkerSlot, b: WorkerSlot): number {
  const byRouters = a.routers.size + a.pending - (b.routers.size + b.pending);
  if (byRouters !== 0) return byRouters;
  const byCpu = Math.round(a.cpuLoad * 20) - Math.round(b.cpuLoad * 20);
  if (byCpu !== 0) return byCpu;
  return a.index - b.index;
}

/** Closes a worker and waits (up to 3 s) for its process to exit. */
function closeWorker(worker: ms.Worker): Promise<void> {
  if (!worker.closed) worker.close();
  if (worker.subprocessClosed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 3000);
    timer.unref();
    worker.once('subprocessclose', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * The face engine: a pool of worker threads, each running face-api on the tfjs WASM backend
 * with its models loaded once, so inference never blocks the event loop.
 *
 * Two ways in:
 * - `analyze` / `analyzeEncoded`: one-off jobs (reference photo, document still). Queued FIFO,
 *   never dropped; the queue is bounded (`maxQueuedJobs`, then EngineError 'overloaded').
 * - `submitFrame(callKey, frame)`: live video. Latest frame wins, per call: a call has at most
 *   one frame being analysed and one waiting; a newer frame replaces the waiting one, whose
 *   promise resolves `{ status: 'dropped' }` (counted in callStats). A slow engine therefore
 *   analyses the freshest frame available and never builds a backlog of stale ones.
 *   Calls are served round-robin in the order their frames became ready, so one call cannot
 *   starve another.
 *
 * A worker that crashes or hangs (job timeout) is replaced; only the job it held fails
 * (EngineError 'worker_crashed' / 'timeout'), and later frames of the same call go on.
 *
 * Detector choice (bench/face-match.ts, 640×480, this 2-core machine, WASM SIMD, one thread
 * per worker): see DEFAULT_ENGINE_OPTIONS for the measured figures and the reasoning.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { Logger } from '../logger.ts';
import { assertRgb, DEFAULT_IMAGE_LIMITS, ImageError, probeImage, type ImageFormat, type ImageLimits } from './image.ts';
import type { AnalyzeOptions, WorkerInfo, WorkerInit, WorkerReply, WorkerRequest } from './engine-protocol.ts';
import type { Detector, FrameAnalysis } from './types.ts';

export type { WorkerInfo } from './engine-protocol.ts';

export const ENGINE_ERROR_CODES = [
  'closed',
  'start_failed',
  'worker_crashed',
  'timeout',
  'overloaded',
  'analysis_failed',
] as const;
export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number];

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export interface EngineOptions {
  /** Worker threads; default: the number of cores. Each holds ~400 MB RSS after live frames, ~600 MB once it has analysed a 1600 px upload (the WASM heap grows and never shrinks; measured, stable over 200 frames). */
  workers: number;
  /** Detector for live frames. */
  detector: Detector;
  /** Detector for uploaded images (reference photo, document still), where accuracy beats speed. */
  imageDetector: Detector;
  /** Detection confidence floor. */
  minScore: number;
  /** At most this many faces per image get landmarks and descriptors. */
  maxFaces: number;
  /** TinyFaceDetector input size (multiple of 32). */
  tinyInputSize: number;
  /** Uploaded images with a longer side are downscaled before analysis. */
  maxImageSide: number;
  /** Live frames with a longer side are downscaled before analysis. */
  maxFrameSide: number;
  imageLimits: ImageLimits;
  /** A job not answered in this time terminates and replaces its worker. */
  jobTimeoutMs: number;
  /** One-off jobs allowed to wait; beyond that analyze() fails fast with 'overloaded'. */
  maxQueuedJobs: number;
  /** How long close() waits for running jobs before terminating the workers. */
  closeTimeoutMs: number;
  /** Pause before replacing a worker that died while starting (crash loop guard). */
  restartDelayMs: number;
  modelDir?: string;
  logger?: Logger;
  /** Tests only: lets crashWorkerForTest() crash a worker. */
  testHooks?: boolean;
  /** Observer (operations metrics): each live frame analysed, its compute time and submit-to-result latency, ms. */
  onFrameAnalyzed?: (analysisMs: number, latencyMs: number) => void;
}

/**
 * Defaults.
 *
 * Live detector: TinyFaceDetector at input 416. Measured at 640×480 on this machine
 * (bench/face-match.ts; figures in src/identity/README.md): 2.3–2.9× faster than
 * SsdMobilenetv1 per frame (p50 155–162 ms vs 360–469 ms on one core, in two runs under
 * different load), which at the default 2 frames/s is ~3 vs ~1 concurrent calls per core. On a video call the face is
 * large, frontal and alone: tiny found it in as many of the real-face test frames as SSD did
 * (169 vs 164 of 180), and its genuine distances were no worse (max 0.21 vs 0.30), because the
 * descriptor is computed on a chip aligned from the landmarks, not on the detector's box.
 * SSD finds small, turned and partly covered faces that tiny misses; that matters for uploads
 * (a reference photo must be checked for a second face; a document shows a small portrait),
 * where latency does not: uploads use SSD.
 */
export const DEFAULT_ENGINE_OPTIONS: Readonly<Omit<EngineOptions, 'logger' | 'modelDir' | 'testHooks'>> = Object.freeze({
  workers: Math.max(1, os.availableParallelism?.() ?? os.cpus().length),
  detector: 'tiny',
  imageDetector: 'ssd',
  minScore: 0.5,
  maxFaces: 5,
  tinyInputSize: 416,
  maxImageSide: 1600,
  maxFrameSide: 1280,
  imageLimits: DEFAULT_IMAGE_LIMITS,
  jobTimeoutMs: 30_000,
  maxQueuedJobs: 64,
  closeTimeoutMs: 10_000,
  restartDelayMs: 1000,
});

export interface Frame {
  /** Packed RGB, width × height × 3 bytes. The engine copies it when the frame is dispatched. */
  rgb: Uint8Array;
  width: number;
  height: number;
  /** Capture time (ms, any clock the caller uses consistently), echoed in the outcome. */
  ts: number;
}

export type FrameOutcome =
  | { status: 'analyzed'; ts: number; analysis: FrameAnalysis; /** ms from submit to result */ latencyMs: number }
  | { status: 'dropped'; ts: number }
  | { status: 'failed'; ts: number; error: EngineError | ImageError };

export interface CallFrameStats {
  submitted: number;
  analyzed: number;
  dropped: number;
  failed: number;
}

export interface EngineStats {
  workers: number;
  busyWorkers: number;
  queuedJobs: number;
  calls: number;
  restarts: number;
  info: WorkerInfo | null;
}

interface AnalyzeJobOptions {
  detector?: Detector;
}

// ---------------------------------------------------------------------------------------------

interface Job {
  kind: 'job';
  request: (id: number) => { msg: WorkerRequest; transfer: ArrayBuffer[] };
  resolve: (a: FrameAnalysis) => void;
  reject: (e: Error) => void;
}

interface PendingFrame {
  frame: Frame;
  detector: Detector;
  submittedAt: number;
  resolve: (o: FrameOutcome) => void;
}

interface CallState {
  key: string;
  pending: PendingFrame | null;
  inFlight: boolean;
  queued: boolean;
  stats: CallFrameStats;
}

interface Running {
  id: number;
  onResult: (reply: Extract<WorkerReply, { type: 'result' }>) => void;
  onFailure: (err: EngineError) => void;
  timer: NodeJS.Timeout;
}

interface Slot {
  index: number;
  worker: Worker;
  ready: boolean;
  running: Running | null;
  /** Set when we terminate it on purpose (timeout, close), so exit is not a crash. */
  retiring: boolean;
}

type Ticket = Job | { kind: 'call'; call: CallState };

const require = createRequire(import.meta.url);

function spawnWorker(init: WorkerInit): Worker {
  const entry = new URL(import.meta.url.endsWith('.ts') ? './engine-worker.ts' : './engine-worker.js', import.meta.url);
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData: init });
  // Worker threads do not inherit the parent's TypeScript loader under every runner (vitest,
  // plain node): register tsx inside the worker before importing the TypeScript entry.
  const tsxApi = pathToFileURL(require.resolve('tsx/esm/api')).href.replace(/\.cjs$/, '.mjs');
  const code =
    `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })` +
    `.catch((e) => { setImmediate(() => { throw e; }); });`;
  return new Worker(code, { eval: true, workerData: init });
}

export class FaceEngine {
  private readonly opts: EngineOptions;
  private readonly slots: Slot[] = [];
  private readonly queue: Ticket[] = [];
  private readonly calls = new Map<string, CallState>();
  private nextId = 1;
  private restarts = 0;
  private closing = false;
  private closed = false;
  private workerInfo: WorkerInfo | null = null;
  private readonly idleWaiters: (() => void)[] = [];

  private constructor(opts: EngineOptions) {
    this.opts = opts;
  }

  /** Starts the pool and resolves once every worker has loaded its models. */
  static async start(options: Partial<EngineOptions> = {}): Promise<FaceEngine> {
    const opts: EngineOptions = { ...DEFAULT_ENGINE_OPTIONS, ...options };
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError('workers must be a positive integer');
    if (opts.tinyInputSize % 32 !== 0) throw new RangeError('tinyInputSize must be a multiple of 32');
    const engine = new FaceEngine(opts);
    try {
      await Promise.all(Array.from({ length: opts.workers }, (_, i) => engine.startSlot(i)));
    } catch (err) {
      await engine.close();
      throw err;
    }
    opts.logger?.info({ workers: opts.workers, ...engine.workerInfo, detector: opts.detector }, 'face engine ready');
    return engine;
  }

  /** Versions and backend of the workers (all identical). */
  get info(): WorkerInfo {
    return this.workerInfo!;
  }

  get options(): Readonly<EngineOptions> {
    return this.opts;
  }

  // -------------------------------------------------------------------------------------------
  // Public API

  /** Analyse one packed-RGB image. Never dropped; fails fast when the job queue is full. */
  analyze(rgb: Uint8Array, width: number, height: number, options: AnalyzeJobOptions = {}): Promise<FrameAnalysis> {
    try {
      assertRgb({ data: rgb, width, height }, this.opts.imageLimits);
    } catch (err) {
      return Promise.reject(err);
    }
    const detector = options.detector ?? this.opts.detector;
    return this.enqueueJob((id) => {
      const copy = new Uint8Array(rgb); // a copy with its own buffer (Buffer#slice would be a view)
      return {
        msg: { type: 'analyze', id, detector, options: this.analyzeOptions(this.opts.maxFrameSide), rgb: copy.buffer, width, height },
        transfer: [copy.buffer],
      };
    });
  }

  /**
   * Decode (in a worker) and analyse an uploaded JPEG/PNG. The type, byte size and pixel limits
   * are checked here first, from the header only; the full decode happens off the event loop.
   * Rejects with ImageError for bad input.
   */
  analyzeEncoded(bytes: Uint8Array, options: AnalyzeJobOptions = {}): Promise<FrameAnalysis & { format: ImageFormat }> {
    let format: ImageFormat;
    try {
      format = probeImage(bytes, this.opts.imageLimits).format;
    } catch (err) {
      return Promise.reject(err);
    }
    const detector = options.detector ?? this.opts.imageDetector;
    return this.enqueueJob((id) => {
      const copy = new Uint8Array(bytes);
      return {
        msg: {
          type: 'analyzeEncoded',
          id,
          detector,
          options: this.analyzeOptions(this.opts.maxImageSide),
          bytes: copy.buffer,
          limits: this.opts.imageLimits,
        },
        transfer: [copy.buffer],
      };
    }).then((a) => ({ ...a, format }));
  }

  /**
   * Offer a live frame of a call. Resolves when the frame is analysed, dropped (a newer frame of
   * the same call arrived while it waited, or the call was released) or failed. Never rejects.
   */
  submitFrame(callKey: string, frame: Frame, options: AnalyzeJobOptions = {}): Promise<FrameOutcome> {
    const ts = frame.ts;
    if (this.closing) return Promise.resolve({ status: 'failed', ts, error: new EngineError('closed', 'the face engine is closed') });
    try {
      assertRgb({ data: frame.rgb, width: frame.width, height: frame.height }, this.opts.imageLimits);
    } catch (err) {
      return Promise.resolve({ status: 'failed', ts, error: err as ImageError });
    }
    let call = this.calls.get(callKey);
    if (!call) {
      call = { key: callKey, pending: null, inFlight: false, queued: false, stats: { submitted: 0, analyzed: 0, dropped: 0, failed: 0 } };
      this.calls.set(callKey, call);
    }
    call.stats.submitted++;
    return new Promise<FrameOutcome>((resolve) => {
      const c = call!;
      if (c.pending) {
        c.stats.dropped++;
        c.pending.resolve({ status: 'dropped', ts: c.pending.frame.ts });
      }
      c.pending = { frame, detector: options.detector ?? this.opts.detector, submittedAt: performance.now(), resolve };
      if (!c.inFlight && !c.queued) {
        c.queued = true;
        this.queue.push({ kind: 'call', call: c });
      }
      this.dispatch();
    });
  }

  /** Frame counters of a call (undefined for an unknown or released call). */
  callStats(callKey: string): Readonly<CallFrameStats> | undefined {
    const c = this.calls.get(callKey);
    return c ? { ...c.stats } : undefined;
  }

  /** The call ended: drop its waiting frame and forget it. A frame being analysed still resolves. */
  releaseCall(callKey: string): CallFrameStats | undefined {
    const c = this.calls.get(callKey);
    if (!c) return undefined;
    if (c.pending) {
      c.stats.dropped++;
      c.pending.resolve({ status: 'dropped', ts: c.pending.frame.ts });
      c.pending = null;
    }
    this.calls.delete(callKey);
    return { ...c.stats };
  }

  stats(): EngineStats {
    return {
      workers: this.slots.length,
      busyWorkers: this.slots.filter((s) => s.running).length,
      queuedJobs: this.queue.length,
      calls: this.calls.size,
      restarts: this.restarts,
      info: this.workerInfo,
    };
  }

  /**
   * Graceful close: refuse new work, drop waiting frames, fail waiting jobs with 'closed', let
   * running jobs finish (up to closeTimeoutMs), then terminate the workers.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    for (const t of this.queue.splice(0)) {
      if (t.kind === 'job') t.reject(new EngineError('closed', 'the face engine is closed'));
    }
    for (const key of [...this.calls.keys()]) this.releaseCall(key);
    if (this.slots.some((s) => s.running)) {
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => setTimeout(r, this.opts.closeTimeoutMs).unref()),
      ]);
    }
    this.closed = true;
    await Promise.all(
      this.slots.map(async (s) => {
        s.retiring = true;
        s.running?.onFailure(new EngineError('closed', 'the face engine closed during the analysis'));
        await s.worker.terminate();
      }),
    );
    this.opts.logger?.info({ restarts: this.restarts }, 'face engine closed');
  }

  /** Tests only (needs testHooks): crash worker `index` as an uncaught exception would. */
  crashWorkerForTest(index = 0): void {
    if (!this.opts.testHooks) throw new Error('crashWorkerForTest needs testHooks: true');
    this.slots[index]?.worker.postMessage({ type: 'crash' } satisfies WorkerRequest);
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  private analyzeOptions(maxSide: number): AnalyzeOptions {
    return { minScore: this.opts.minScore, maxFaces: this.opts.maxFaces, tinyInputSize: this.opts.tinyInputSize, maxSide };
  }

  private enqueueJob(request: Job['request']): Promise<FrameAnalysis> {
    if (this.closing) return Promise.reject(new EngineError('closed', 'the face engine is closed'));
    const waiting = this.queue.filter((t) => t.kind === 'job').length;
    if (waiting >= this.opts.maxQueuedJobs) {
      return Promise.reject(new EngineError('overloaded', `${waiting} analyses are already waiting`));
    }
    return new Promise<FrameAnalysis>((resolve, reject) => {
      this.queue.push({ kind: 'job', request, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) break;
      if (!slot.ready || slot.running || slot.retiring) continue;
      const ticket = this.queue.shift()!;
      if (ticket.kind === 'job') this.runJob(slot, ticket);
      else this.runFrame(slot, ticket.call);
    }
  }

  private runJob(slot: Slot, job: Job): void {
    const id = this.nextId++;
    let request;
    try {
      request = job.request(id);
    } catch (err) {
      job.reject(err as Error);
      return;
    }
    this.run(slot, id, request.msg, request.transfer, {
      onResult: (reply) => {
        if (reply.ok) job.resolve(reply.analysis);
        else job.reject(reply.error.kind === 'image' ? new ImageError(reply.error.code, reply.error.message) : new EngineError('analysis_failed', reply.error.message));
      },
      onFailure: (err) => job.reject(err),
    });
  }

  private runFrame(slot: Slot, call: CallState): void {
    call.queued = false;
    const p = call.pending;
    if (!p) return; // released while queued
    call.pending = null;
    call.inFlight = true;
    const id = this.nextId++;
    const copy = new Uint8Array(p.frame.rgb);
    const finish = (outcome: FrameOutcome) => {
      call.inFlight = false;
      if (outcome.status === 'analyzed') call.stats.analyzed++;
      else if (outcome.status === 'failed') call.stats.failed++;
      p.resolve(outcome);
      if (call.pending && !call.queued && this.calls.get(call.key) === call && !this.closing) {
        call.queued = true;
        this.queue.push({ kind: 'call', call });
      }
    };
    this.run(
      slot,
      id,
      {
        type: 'analyze',
        id,
        detector: p.detector,
        options: this.analyzeOptions(this.opts.maxFrameSide),
        rgb: copy.buffer,
        width: p.frame.width,
        height: p.frame.height,
      },
      [copy.buffer],
      {
        onResult: (reply) => {
          if (reply.ok) {
            const latencyMs = performance.now() - p.submittedAt;
            this.opts.onFrameAnalyzed?.(reply.analysis.ms, latencyMs);
            finish({ status: 'analyzed', ts: p.frame.ts, analysis: reply.analysis, latencyMs });
          } else
            finish({
              status: 'failed',
              ts: p.frame.ts,
              error: reply.error.kind === 'image' ? new ImageError(reply.error.code, reply.error.message) : new EngineError('analysis_failed', reply.error.message),
            });
        },
        onFailure: (error) => finish({ status: 'failed', ts: p.frame.ts, error }),
      },
    );
  }

  private run(
    slot: Slot,
    id: number,
    msg: WorkerRequest,
    transfer: ArrayBuffer[],
    handlers: Pick<Running, 'onResult' | 'onFailure'>,
  ): void {
    const timer = setTimeout(() => {
      if (slot.running?.id !== id) return;
      this.opts.logger?.error({ worker: slot.index, timeoutMs: this.opts.jobTimeoutMs }, 'face engine job timed out; replacing the worker');
      this.replaceSlot(slot, new EngineError('timeout', `no answer from the face engine within ${this.opts.jobTimeoutMs} ms`), true);
    }, this.opts.jobTimeoutMs);
    timer.unref();
    slot.running = { id, timer, ...handlers };
    try {
      slot.worker.postMessage(msg, transfer);
    } catch (err) {
      // The worker is gone (its exit event will replace it); fail this job only.
      clearTimeout(timer);
      slot.running = null;
      handlers.onFailure(new EngineError('worker_crashed', `cannot reach the face engine worker: ${(err as Error).message}`));
    }
  }

  private settle(slot: Slot, reply: Extract<WorkerReply, { type: 'result' }>): void {
    const r = slot.running;
    if (!r || r.id !== reply.id) return;
    clearTimeout(r.timer);
    slot.running = null;
    try {
      r.onResult(reply);
    } finally {
      this.afterJob();
    }
  }

  private afterJob(): void {
    if (this.closing && !this.slots.some((s) => s.running)) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
    if (!this.closing) this.dispatch();
  }

  private startSlot(index: number): Promise<void> {
    const worker = spawnWorker({ modelDir: this.opts.modelDir, testHooks: this.opts.testHooks });
    const slot: Slot = { index, worker, ready: false, running: null, retiring: false };
    this.slots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: WorkerReply) => {
        if (m.type === 'ready') {
          started = true;
          slot.ready = true;
          this.workerInfo ??= m.info;
          resolve();
          this.dispatch();
        } else if (m.type === 'fatal') {
          if (!started) reject(new EngineError('start_failed', m.message));
        } else if (m.type === 'result') {
          this.settle(slot, m);
        }
      });
      worker.on('error', (err) => {
        if (!started) {
          reject(new EngineError('start_failed', `face engine worker failed to start: ${err.message}`));
          return;
        }
        this.opts.logger?.error({ worker: index, err: { message: err.message } }, 'face engine worker crashed');
      });
      worker.on('exit', (code) => {
        if (!started) {
          reject(new EngineError('start_failed', `face engine worker exited with code ${code} while starting`));
          slot.retiring = true;
        }
        if (slot.retiring || this.closed || this.slots[index] !== slot) return;
        this.opts.logger?.error({ worker: index, code }, 'face engine worker exited; replacing it');
        this.replaceSlot(slot, new EngineError('worker_crashed', 'the face engine worker crashed during this analysis'), false);
      });
    });
  }

  /** Fail the slot's running job, retire the worker and start a replacement. */
  private replaceSlot(slot: Slot, error: EngineError, terminate: boolean): void {
    if (slot.retiring) return;
    slot.retiring = true;
    slot.ready = false;
    const r = slot.running;
    slot.running = null;
    if (r) {
      clearTimeout(r.timer);
      r.onFailure(error);
    }
    if (terminate) void slot.worker.terminate();
    this.afterJob();
    if (this.closing) return;
    this.restarts++;
    const restart = () => {
      if (this.closing) return;
      this.startSlot(slot.index).catch((err: Error) => {
        this.opts.logger?.error({ worker: slot.index, err: { message: err.message } }, 'face engine worker restart failed; retrying');
        const s = this.slots[slot.index];
        if (s) s.retiring = true;
        setTimeout(restart, this.opts.restartDelayMs).unref();
      });
    };
    restart();
  }
}

import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { types as ms } from 'mediasoup';
import type { Logger } from '../src/logger.ts';
import { childWithCall } from './call-logger.ts';
import type { CallMedia } from './call-media.ts';
import { backoffDelayMs, cancellableDelay, createFfmpegTransport, exitText, ffmpegCapabilities, FfmpegChild, type CancellableDelay, type FfmpegExit } from './ffmpeg-child.ts';
import { safeEmit } from './safe-emit.ts';
import { buildRecvSdp, TAP_VIDEO_CODECS } from './sdp.ts';
import { findFreeUdpPortPair, type UdpPortPair } from './udp-ports.ts';

/**
 * The server-side frame tap: the customer's video as the SERVER receives it (the browser could
 * lie about what its camera shows), decoded to packed RGB frames for the identity engine.
 *
 *   customer's Producer ──(router)──▶ Consumer on a PlainTransport (127.0.0.1)
 *       ──RTP/UDP loopback──▶ ffmpeg (SDP on stdin; decode; select ≤ maxFps; scale+pad; rgb24)
 *       ──stdout pipe──▶ FrameAssembler (exact frame-size chunks) ──▶ rate gate ──▶ 'frame'
 *
 * One "pipeline" = transport + consumer + ffmpeg process. A pipeline that fails (ffmpeg exits,
 * does not bind its ports in time) is torn down whole and a new one built after a backoff, with
 * new ports: a PlainTransport can be connected only once, and a fresh consumer starts again at a
 * key frame. See media/README.md ("Frame tap") for the design choices.
 */

export interface TapFrame {
  /** Packed RGB, row-major, `width * height * 3` bytes; owned by the listener (never reused). */
  rgb: Uint8Array;
  width: number;
  height: number;
  /** When the frame came out of the decoder (epoch ms). */
  ts: number;
}

export type FrameTapCloseReason =
  /** close() was called. */
  | 'closed'
  /** The customer's video producer closed (their send transport went away). */
  | 'producer_closed'
  /** The call's router closed (the call ended, or its worker died). */
  | 'router_closed'
  /** ffmpeg could not be started, or failed more than `maxRestarts` times in a row. */
  | 'failed';

export interface FrameTapClosedEvent {
  reason: FrameTapCloseReason;
  error?: FrameTapError;
}

export interface FrameTapRestartEvent {
  /** Consecutive failures so far (1 = the first since the last healthy run). */
  failures: number;
  /** Wait before the next attempt. */
  delayMs: number;
  reason: string;
}

export type FrameTapEvents = {
  frame: [TapFrame];
  /** A pipeline failed and another is about to be built (logged too). */
  restart: [FrameTapRestartEvent];
  /** Emitted once, whatever closed the tap. */
  closed: [FrameTapClosedEvent];
};

export type FrameTapErrorCode =
  /** An option or setRate() argument out of range. */
  | 'bad_option'
  /** The call has no customer video to tap (forCall). */
  | 'no_producer'
  /** The producer is not VP8 or H.264 video. */
  | 'unsupported_codec'
  /** The ffmpeg executable could not be run (not on PATH, not executable). */
  | 'ffmpeg_missing'
  /** ffmpeg failed more than `maxRestarts` times in a row. */
  | 'ffmpeg_failed'
  /** The tap was closed (while starting). */
  | 'closed';

/** A failure of the frame tap (server-internal; never sent to a client). */
export class FrameTapError extends Error {
  constructor(
    readonly code: FrameTapErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'FrameTapError';
  }
}

export interface FrameTapStats {
  /** Frames given to 'frame' listeners. */
  framesEmitted: number;
  /** Frames ffmpeg decoded and delivered that the rate gate discarded. */
  framesDropped: number;
  /** Pipelines built after the first (each is a new ffmpeg process). */
  restarts: number;
  keyFrameRequests: number;
  /** Epoch ms of the last emitted frame. */
  lastFrameAt: number | undefined;
  /** The configured output rate (frames/s). */
  fps: number;
  /** The running ffmpeg's pid, if a pipeline is up. */
  pid: number | undefined;
}

export interface FrameTapOptions {
  /** The call's router: the tap's PlainTransport goes on it, so closing the call closes it too. */
  router: ms.Router;
  /** The customer's video producer (VP8, or H.264 from phones without VP8). */
  producer: ms.Producer;
  sessionId: string;
  callId: string;
  logger: Logger;
  /** Output frame size (default 640×480). The picture is scaled to fit and padded (letterboxed) with black. */
  width?: number;
  height?: number;
  /** Frames per second emitted (default 2); change it with setRate(). */
  fps?: number;
  /** Most frames per second ffmpeg delivers, and the ceiling of setRate() (default 10). */
  maxFps?: number;
  /** The ffmpeg executable (default `ffmpeg`, from PATH). */
  ffmpegPath?: string;
  /** Until the first frame is decoded, and during a gap, ask for a key frame this often (default 1000 ms). */
  keyFrameRetryMs?: number;
  /** No decoded frame for this long (while the producer is not paused) is a gap: ask for key frames (default 3000 ms). */
  frameGapMs?: number;
  /**
   * No decoded frame for this long although RTP keeps arriving (key frame requests did not help):
   * ffmpeg is stuck (e.g. its jitter buffer dropping a stream whose sequence numbers jumped), so
   * the pipeline is replaced, counted as a failure (default 8000 ms).
   */
  stallRestartMs?: number;
  /** Consecutive pipeline failures tolerated before the tap gives up and closes as `failed` (default 5). */
  maxRestarts?: number;
  /** Wait before the n-th consecutive restart (the last value repeats). */
  restartBackoffMs?: readonly number[];
  /** A pipeline that has decoded frames for this long was healthy: its failure counts as the first again (default 10 s). */
  stableAfterMs?: number;
  /** How long ffmpeg may take to bind its ports (default 5000 ms). */
  listenTimeoutMs?: number;
  /** SIGTERM, then SIGKILL after this long (default 2000 ms). */
  killTimeoutMs?: number;
}

const DEFAULTS = {
  width: 640,
  height: 480,
  fps: 2,
  maxFps: 10,
  ffmpegPath: 'ffmpeg',
  keyFrameRetryMs: 1000,
  frameGapMs: 3000,
  stallRestartMs: 8000,
  maxRestarts: 5,
  restartBackoffMs: [250, 1000, 2000, 4000, 8000],
  stableAfterMs: 10_000,
  listenTimeoutMs: 5000,
  killTimeoutMs: 2000,
} as const;

/** RTP packets sent to ffmpeg during a gap that prove the stream flows (a second of low-rate video is more). */
const STALL_MIN_PACKETS = 20;

interface Pipeline {
  seq: number;
  state: 'starting' | 'running' | 'retired';
  startedAt: number;
  transport?: ms.PlainTransport;
  consumer?: ms.Consumer;
  ports?: UdpPortPair;
  ffmpeg?: FfmpegChild<Readable>;
  firstFrameAt?: number;
  lastDecodedAt?: number;
  lastKeyFrameRequestAt: number;
  /** When the consumer was resumed (the start of the wait for the first frame). */
  runningAt?: number;
  /** RTP packets the consumer had sent to ffmpeg when the current gap was first noticed. */
  gapPackets?: number;
  /** A stats request for the stall check is under way. */
  statsPending?: boolean;
}

/**
 * Splits a byte stream into frames of exactly `frameSize` bytes, whatever the pipe's read
 * boundaries. `onFrame` returns whether it kept the buffer: if it did, the next frame is written
 * into a new one; if not (a dropped frame) the buffer is reused, so dropping costs no allocation.
 */
export class FrameAssembler {
  private buf: Uint8Array;
  private filled = 0;

  constructor(
    readonly frameSize: number,
    private readonly onFrame: (frame: Uint8Array) => boolean,
  ) {
    if (!Number.isInteger(frameSize) || frameSize <= 0) throw new RangeError('frameSize must be a positive integer');
    this.buf = new Uint8Array(frameSize);
  }

  push(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(this.frameSize - this.filled, chunk.length - offset);
      this.buf.set(chunk.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === this.frameSize) {
        this.filled = 0;
        if (this.onFrame(this.buf)) this.buf = new Uint8Array(this.frameSize);
      }
    }
  }

  /** Bytes of an incomplete frame waiting for the rest. */
  get pending(): number {
    return this.filled;
  }
}

export class FrameTap extends EventEmitter<FrameTapEvents> {
  readonly width: number;
  readonly height: number;
  readonly maxFps: number;
  readonly sessionId: string;
  readonly callId: string;
  private readonly router: ms.Router;
  private readonly producer: ms.Producer;
  private readonly log: Logger;
  private readonly opts: Required<Omit<FrameTapOptions, 'router' | 'producer' | 'sessionId' | 'callId' | 'logger' | 'width' | 'height' | 'fps' | 'maxFps'>>;
  private readonly rtpCapabilities: ms.RtpCapabilities;
  private fps: number;
  private intervalMs: number;
  private nextDueAt = 0;
  private pipeline: Pipeline | undefined;
  private seq = 0;
  private failures = 0;
  private counters = { framesEmitted: 0, framesDropped: 0, restarts: 0, keyFrameRequests: 0, lastFrameAt: undefined as number | undefined };
  private watchdog: NodeJS.Timeout | undefined;
  private backoffWait: CancellableDelay | undefined;
  private closeReason: FrameTapCloseReason | undefined;
  private closing: Promise<void> | undefined;
  /** Pipelines being built (start or restart), so close() can wait for them to unwind. */
  private readonly inflight = new Set<Promise<unknown>>();
  // Closing the router closes its transports, and so the producer, before the router's own
  // 'close' event: the router is already marked closed then, so report the real cause.
  private readonly onProducerClose = () => void this.close(this.router.closed ? 'router_closed' : 'producer_closed');
  private readonly onRouterClose = () => void this.close('router_closed');

  private constructor(opts: FrameTapOptions) {
    super();
    this.router = opts.router;
    this.producer = opts.producer;
    this.sessionId = opts.sessionId;
    this.callId = opts.callId;
    this.log = childWithCall(opts.logger, opts.sessionId, opts.callId).child({ component: 'frame-tap' });
    this.width = opts.width ?? DEFAULTS.width;
    this.height = opts.height ?? DEFAULTS.height;
    this.maxFps = opts.maxFps ?? DEFAULTS.maxFps;
    this.opts = {
      ffmpegPath: opts.ffmpegPath ?? DEFAULTS.ffmpegPath,
      keyFrameRetryMs: opts.keyFrameRetryMs ?? DEFAULTS.keyFrameRetryMs,
      frameGapMs: opts.frameGapMs ?? DEFAULTS.frameGapMs,
      stallRestartMs: opts.stallRestartMs ?? DEFAULTS.stallRestartMs,
      maxRestarts: opts.maxRestarts ?? DEFAULTS.maxRestarts,
      restartBackoffMs: opts.restartBackoffMs ?? DEFAULTS.restartBackoffMs,
      stableAfterMs: opts.stableAfterMs ?? DEFAULTS.stableAfterMs,
      listenTimeoutMs: opts.listenTimeoutMs ?? DEFAULTS.listenTimeoutMs,
      killTimeoutMs: opts.killTimeoutMs ?? DEFAULTS.killTimeoutMs,
    };
    // Even sizes: what a video pipeline (and the identity engine's thumbnails) expects.
    for (const [name, v] of [['width', this.width], ['height', this.height]] as const) {
      if (!Number.isInteger(v) || v < 16 || v > 4096 || v % 2 !== 0) throw new FrameTapError('bad_option', `${name} must be an even integer in 16..4096, got ${v}`);
    }
    if (!(this.maxFps > 0 && this.maxFps <= 60)) throw new FrameTapError('bad_option', `maxFps must be in (0, 60], got ${this.maxFps}`);
    if (!Number.isInteger(this.opts.maxRestarts) || this.opts.maxRestarts < 0) throw new FrameTapError('bad_option', 'maxRestarts must be a non-negative integer');
    if (this.opts.restartBackoffMs.length === 0) throw new FrameTapError('bad_option', 'restartBackoffMs must not be empty');
    this.fps = this.checkRate(opts.fps ?? DEFAULTS.fps);
    this.intervalMs = 1000 / this.fps;
    // The router's VP8 and H.264, plain (see ffmpegCapabilities). Key frames are asked for by requestKeyFrame().
    this.rtpCapabilities = ffmpegCapabilities(opts.router, TAP_VIDEO_CODECS);
  }

  /**
   * Starts tapping `producer`: resolves once ffmpeg listens and the consumer is resumed (frames
   * follow after the next key frame). Rejects with FrameTapError if the producer is not VP8/H.264
   * video, ffmpeg cannot be run, or every attempt fails; nothing is left behind then.
   * Listeners added right after the await miss nothing: frames arrive on later I/O callbacks.
   */
  static async start(opts: FrameTapOptions): Promise<FrameTap> {
    const tap = new FrameTap(opts);
    const { producer, router } = opts;
    if (producer.kind !== 'video') throw new FrameTapError('unsupported_codec', 'the frame tap needs a video producer');
    const mime = producer.rtpParameters.codecs[0]?.mimeType ?? '';
    if (!TAP_VIDEO_CODECS.some((c) => c.toLowerCase() === mime.toLowerCase())) {
      throw new FrameTapError('unsupported_codec', `the frame tap cannot decode ${mime || 'this producer'}`);
    }
    if (producer.closed || router.closed) throw new FrameTapError('closed', 'the producer or the router is already closed');
    producer.observer.once('close', tap.onProducerClose);
    router.observer.once('close', tap.onRouterClose);
    tap.log.info({ producerId: producer.id, codec: mime, width: tap.width, height: tap.height, fps: tap.fps, maxFps: tap.maxFps }, 'frame tap starting');
    try {
      await tap.track(tap.launchUntilUp());
    } catch (err) {
      const error = err instanceof FrameTapError ? err : new FrameTapError('ffmpeg_failed', 'the frame tap could not start', { cause: err });
      await tap.close(tap.closeReason ?? 'failed', error);
      throw error;
    }
    tap.watchdog = setInterval(() => tap.checkKeyFrames(), tap.opts.keyFrameRetryMs);
    tap.watchdog.unref();
    return tap;
  }

  /** Taps the customer's video of a call (its router and current customer video producer). */
  static forCall(media: CallMedia, opts: Omit<FrameTapOptions, 'router' | 'producer' | 'sessionId' | 'callId'>): Promise<FrameTap> {
    const producer = media.getProducer('customer', 'video');
    if (!producer || media.closed) return Promise.reject(new FrameTapError('no_producer', 'the customer is not sending video'));
    return FrameTap.start({ ...opts, router: media.router, producer, sessionId: media.sessionId, callId: media.callId });
  }

  /** Frames per second emitted. */
  get rate(): number {
    return this.fps;
  }

  /**
   * Changes the output rate at once (e.g. 8 frames/s while a liveness challenge is open). ffmpeg
   * keeps delivering up to `maxFps` and the tap drops the surplus, so no restart, no key frame
   * and no gap is needed. Throws `bad_option` outside (0, maxFps].
   */
  setRate(fps: number): void {
    const next = this.checkRate(fps);
    if (next === this.fps) return;
    const last = this.counters.lastFrameAt;
    this.fps = next;
    this.intervalMs = 1000 / next;
    // A faster rate applies to the next frame already; a slower one counts from the last frame.
    this.nextDueAt = last === undefined ? 0 : last + this.intervalMs;
    this.log.info({ fps: next }, 'frame tap rate changed');
  }

  stats(): FrameTapStats {
    const ffmpeg = this.pipeline?.state === 'running' ? this.pipeline.ffmpeg : undefined;
    return { ...this.counters, fps: this.fps, pid: ffmpeg?.pid };
  }

  /** The running ffmpeg's pid (for tests and diagnostics). */
  get pid(): number | undefined {
    return this.stats().pid;
  }

  /** Where the running pipeline is (for tests and diagnostics): ffmpeg's pid and ports, the transport on the router. */
  get endpoint(): { pid: number; rtpPort: number; rtcpPort: number; transportId: string; transportPort: number } | undefined {
    const p = this.pipeline;
    if (!p || p.state !== 'running' || !p.ffmpeg?.pid || !p.ports || !p.transport) return undefined;
    return { pid: p.ffmpeg.pid, ...p.ports, transportId: p.transport.id, transportPort: p.transport.tuple.localPort };
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  /**
   * Stops everything: ffmpeg (SIGTERM, then SIGKILL), the consumer and the transport. Idempotent;
   * resolves when the ffmpeg process has exited. Emits 'closed' once. Never rejects.
   */
  close(reason: FrameTapCloseReason = 'closed', error?: FrameTapError): Promise<void> {
    if (this.closing) return this.closing;
    this.closeReason = reason;
    if (this.watchdog) clearInterval(this.watchdog);
    this.backoffWait?.cancel();
    this.producer.observer.off('close', this.onProducerClose);
    this.router.observer.off('close', this.onRouterClose);
    const p = this.pipeline;
    this.closing = (async () => {
      if (p) await this.retire(p);
      // A launch in progress notices the close at its next step and tears down what it built.
      await Promise.all([...this.inflight].map((l) => l.catch(() => undefined)));
      if (this.pipeline && this.pipeline !== p) await this.retire(this.pipeline);
    })().then(() => {
      const s = this.counters;
      const fields = { reason, framesEmitted: s.framesEmitted, framesDropped: s.framesDropped, restarts: s.restarts };
      if (reason === 'failed') this.log.error({ ...fields, err: error }, 'frame tap gave up');
      else this.log.info(fields, 'frame tap closed');
      this.safeEmit('closed', error ? { reason, error } : { reason });
    });
    return this.closing;
  }

  // ---------------------------------------------------------------------------------------------
  // Pipelines

  /** Builds pipelines until one is up; retryable failures back off, at most `maxRestarts` in a row. */
  private async launchUntilUp(): Promise<void> {
    for (;;) {
      if (this.closeReason) throw new FrameTapError('closed', 'the frame tap was closed');
      if (this.seq > 0) this.counters.restarts++;
      try {
        await this.launch();
        return;
      } catch (err) {
        if (this.closeReason) throw new FrameTapError('closed', 'the frame tap was closed', { cause: err });
        if (err instanceof FrameTapError && err.code !== 'ffmpeg_failed') throw err; // retrying cannot help
        await this.backoff(err instanceof Error ? err.message : String(err));
      }
    }
  }

  /** Counts a failure; throws `ffmpeg_failed` past the bound, otherwise waits the backoff. */
  private async backoff(reason: string): Promise<void> {
    this.failures++;
    if (this.failures > this.opts.maxRestarts) {
      throw new FrameTapError('ffmpeg_failed', `the frame tap failed ${this.failures} times in a row; last: ${reason}`);
    }
    const delayMs = backoffDelayMs(this.opts.restartBackoffMs, this.failures);
    this.log.warn({ failures: this.failures, maxRestarts: this.opts.maxRestarts, delayMs, reason }, 'frame tap restarting');
    this.safeEmit('restart', { failures: this.failures, delayMs, reason });
    this.backoffWait = cancellableDelay(delayMs);
    await this.backoffWait.done;
    this.backoffWait = undefined;
  }

  /**
   * One pipeline, in the order that loses nothing: transport and paused consumer first (their
   * ports are taken before we look for free ones), then ffmpeg, and only once ffmpeg holds its
   * ports: connect, resume, ask for a key frame. Any failure tears the whole pipeline down.
   */
  private async launch(): Promise<void> {
    const p: Pipeline = { seq: ++this.seq, state: 'starting', startedAt: Date.now(), lastKeyFrameRequestAt: 0 };
    this.pipeline = p;
    const live = () => {
      if (this.closeReason || p.state === 'retired') throw new FrameTapError('closed', 'the frame tap was closed');
    };
    try {
      p.transport = await createFfmpegTransport(this.router, { frameTap: true, callId: this.callId });
      live();
      p.consumer = await p.transport.consume({ producerId: this.producer.id, rtpCapabilities: this.rtpCapabilities, paused: true, appData: { frameTap: true } });
      live();
      p.ports = await findFreeUdpPortPair('127.0.0.1');
      live();
      const codec = p.consumer.rtpParameters.codecs[0]!;
      const sdp = buildRecvSdp({ rtpPort: p.ports.rtpPort, codec, name: `frame tap ${this.callId}` });
      const ffmpeg = this.spawnFfmpeg(p);
      await ffmpeg.listen(this.opts.ffmpegPath, {
        sdp,
        ports: [p.ports.rtpPort, p.ports.rtcpPort],
        timeoutMs: this.opts.listenTimeoutMs,
        stopped: () => p.state === 'retired' || this.closeReason !== undefined,
        error: (code, message, options) => new FrameTapError(code, message, options),
      });
      live();
      await p.transport.connect({ ip: '127.0.0.1', port: p.ports.rtpPort, rtcpPort: p.ports.rtcpPort });
      live();
      await p.consumer.resume();
      live();
      if (ffmpeg.exit) throw new FrameTapError('ffmpeg_failed', `ffmpeg exited while starting (${exitText(ffmpeg.exit.code, ffmpeg.exit.signal)}): ${ffmpeg.tail()}`);
      p.state = 'running';
      p.runningAt = Date.now();
      this.log.info(
        { pid: ffmpeg.pid, rtpPort: p.ports.rtpPort, transportId: p.transport.id, consumerId: p.consumer.id, codec: codec.mimeType, pipeline: p.seq },
        'frame tap running',
      );
      this.requestKeyFrame(p, 'start');
    } catch (err) {
      await this.retire(p);
      throw err;
    }
  }

  private spawnFfmpeg(p: Pipeline): FfmpegChild<Readable> {
    const ffmpeg = new FfmpegChild<Readable>(this.opts.ffmpegPath, ffmpegArgs(this.width, this.height, this.maxFps), 'pipe', (exit) => this.onExit(p, exit));
    p.ffmpeg = ffmpeg;
    const assembler = new FrameAssembler(this.width * this.height * 3, (rgb) => this.onDecoded(p, rgb));
    ffmpeg.process.stdout.on('data', (chunk: Buffer) => {
      if (p.state !== 'retired') assembler.push(chunk);
    });
    return ffmpeg;
  }

  /** ffmpeg's process ended: expected when we retired its pipeline, a failure otherwise. */
  private onExit(p: Pipeline, { code, signal }: FfmpegExit): void {
    if (p.state !== 'running' || this.closeReason) return; // retired on purpose, or launch() handles it
    this.fail(p, `ffmpeg exited unexpectedly (${exitText(code, signal)})`, { code, signal });
  }

  /** A running pipeline failed: log it with ffmpeg's last words, tear it down, build another after the backoff. */
  private fail(p: Pipeline, reason: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    this.log.warn({ ...fields, pid: p.ffmpeg?.pid, stderr: p.ffmpeg?.tail() ?? '(no output)', pipeline: p.seq, ranMs: now - p.startedAt }, reason);
    // A pipeline that worked for a while was healthy: this failure is the first of a new series.
    if (p.firstFrameAt !== undefined && now - p.firstFrameAt >= this.opts.stableAfterMs) this.failures = 0;
    void this.retire(p);
    void this.track(
      (async () => {
        await this.backoff(reason);
        await this.launchUntilUp();
      })(),
    ).catch((err: unknown) => {
      if (this.closeReason) return;
      void this.close('failed', err instanceof FrameTapError ? err : new FrameTapError('ffmpeg_failed', String(err), { cause: err }));
    });
  }

  /**
   * Tears a pipeline down: transport (and its consumer) first, so nothing is sent to a dying port;
   * then ffmpeg (SIGTERM, SIGKILL after killTimeoutMs). Safe to call again: a launch that was
   * interrupted calls it once more for what it built after the first call.
   */
  private retire(p: Pipeline): Promise<void> {
    p.state = 'retired';
    if (p.transport && !p.transport.closed) p.transport.close();
    const ffmpeg = p.ffmpeg;
    if (!ffmpeg) return Promise.resolve();
    // SIGTERM twice: ffmpeg acts on its first SIGTERM between packets only; blocked on a socket
    // that no longer receives anything (the transport is closed) it waits forever. A second
    // signal interrupts the blocking read ("Immediate exit requested").
    return ffmpeg.kill('SIGTERM', this.opts.killTimeoutMs, () => this.log.warn({ pid: ffmpeg.pid }, 'ffmpeg ignored SIGTERM; sending SIGKILL'));
  }

  /** Remembers a launch sequence until it settles (see close()). */
  private track<T>(work: Promise<T>): Promise<T> {
    this.inflight.add(work);
    void work.then(
      () => this.inflight.delete(work),
      () => this.inflight.delete(work),
    );
    return work;
  }

  // ---------------------------------------------------------------------------------------------
  // Frames and key frames

  /** A frame out of ffmpeg: emit it if the rate allows; returns whether the buffer was kept. */
  private onDecoded(p: Pipeline, rgb: Uint8Array): boolean {
    const now = Date.now();
    if (p.firstFrameAt === undefined) {
      p.firstFrameAt = now;
      this.log.info({ pipeline: p.seq, afterMs: now - p.startedAt }, 'frame tap: first frame decoded');
    } else if (p.lastDecodedAt !== undefined && now - p.lastDecodedAt >= this.opts.frameGapMs) {
      this.log.info({ pipeline: p.seq, gapMs: now - p.lastDecodedAt }, 'frame tap: frames resumed after a gap');
    }
    p.lastDecodedAt = now;
    p.gapPackets = undefined;
    // Half of ffmpeg's frame spacing as slack: frames arrive with jitter around the schedule.
    if (now < this.nextDueAt - 500 / this.maxFps) {
      this.counters.framesDropped++;
      return false;
    }
    const next = this.nextDueAt + this.intervalMs;
    // Fell behind (a gap, or the first frame): restart the schedule from now rather than burst.
    this.nextDueAt = next < now ? now + this.intervalMs : next;
    this.counters.framesEmitted++;
    this.counters.lastFrameAt = now;
    this.safeEmit('frame', { rgb, width: this.width, height: this.height, ts: now });
    return true;
  }

  /**
   * Runs every keyFrameRetryMs. No first frame yet, or a gap (nothing decoded for frameGapMs), means
   * ask the sender for a key frame; a gap longer than stallRestartMs while RTP still reaches ffmpeg
   * means ffmpeg is stuck: replace the pipeline. Nothing while the producer is paused (camera off):
   * there is nothing to decode, and asking would only bother the customer's encoder.
   */
  private checkKeyFrames(): void {
    const p = this.pipeline;
    if (!p || p.state !== 'running' || this.closeReason || this.producer.paused) return;
    const now = Date.now();
    const gapMs = now - (p.lastDecodedAt ?? p.runningAt ?? now);
    if (p.firstFrameAt !== undefined && gapMs < this.opts.frameGapMs) return;
    if (now - p.lastKeyFrameRequestAt >= this.opts.keyFrameRetryMs * 0.9) this.requestKeyFrame(p, p.firstFrameAt === undefined ? 'no_frame_yet' : 'gap');
    if (gapMs >= Math.min(this.opts.frameGapMs, this.opts.stallRestartMs) && !p.statsPending) void this.checkStall(p, gapMs);
  }

  /** Counts what the consumer sent during the gap; packets flowing without frames past stallRestartMs is a stall. */
  private async checkStall(p: Pipeline, gapMs: number): Promise<void> {
    const consumer = p.consumer;
    if (!consumer) return;
    p.statsPending = true;
    let packets: number | undefined;
    try {
      const stats = await consumer.getStats();
      packets = stats.find((s) => s.type === 'outbound-rtp')?.packetCount;
    } catch {
      return; // closing
    } finally {
      p.statsPending = false;
    }
    if (packets === undefined || p.state !== 'running' || this.closeReason) return;
    if (p.lastDecodedAt !== undefined && Date.now() - p.lastDecodedAt < gapMs) return; // frames came back meanwhile
    if (p.gapPackets === undefined) {
      p.gapPackets = packets;
      return;
    }
    const sent = packets - p.gapPackets;
    if (gapMs >= this.opts.stallRestartMs && sent >= STALL_MIN_PACKETS) {
      this.fail(p, 'ffmpeg decodes nothing although RTP arrives: replacing it', { gapMs, packetsSent: sent });
    }
  }

  /** VP8 and H.264 cannot be decoded from the middle of a stream: ask the customer's encoder for a key frame. */
  private requestKeyFrame(p: Pipeline, why: 'start' | 'no_frame_yet' | 'gap'): void {
    const consumer = p.consumer;
    if (!consumer || consumer.closed) return;
    p.lastKeyFrameRequestAt = Date.now();
    this.counters.keyFrameRequests++;
    this.log.debug({ why, pipeline: p.seq }, 'frame tap: requesting a key frame');
    consumer.requestKeyFrame().catch((err: unknown) => {
      if (!consumer.closed) this.log.warn({ err, why }, 'frame tap: key frame request failed');
    });
  }

  // ---------------------------------------------------------------------------------------------

  private checkRate(fps: number): number {
    if (typeof fps !== 'number' || !(fps > 0) || fps > this.maxFps) {
      throw new FrameTapError('bad_option', `fps must be in (0, ${this.maxFps}] (maxFps), got ${fps}`);
    }
    return fps;
  }

  private safeEmit<E extends keyof FrameTapEvents>(event: E, ...args: FrameTapEvents[E]): void {
    safeEmit(this as unknown as EventEmitter, this.log, 'FrameTap', event, args);
  }
}

/**
 * ffmpeg reads the SDP on stdin (`pipe:0`; no temp file to clean up), binds 127.0.0.1 only
 * (`-localaddr`; by default it would bind every interface), decodes on one thread (frame threads
 * add latency and compete with the identity workers), and delivers at most `maxFps` frames
 * (`select` on the stream time, never duplicating: the `fps` filter would fill a gap with
 * copies of the last frame, which would look like a frozen camera), scaled to fit WxH, converted
 * to rgb24 and padded with black. `-fps_mode passthrough`: the rawvideo muxer would otherwise
 * duplicate or drop frames to a constant rate. Small probe size: the codec is in the SDP and the
 * size comes from the first key frame; probing longer only delays and bursts the first frames.
 */
export function ffmpegArgs(width: number, height: number, maxFps: number): string[] {
  const minGap = (0.9 / maxFps).toFixed(4);
  const filter = [
    // Also take a frame whose time went backwards (a timestamp reset), so it cannot stall the output.
    `select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,${minGap})+lt(t\\,prev_selected_t)'`,
    `scale=${width}:${height}:force_original_aspect_ratio=decrease`,
    'format=rgb24',
    `pad=${width}:${height}:(ow-iw)/2:(oh-ih)/2:color=black`,
    'setsar=1',
  ].join(',');
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'warning',
    '-protocol_whitelist', 'pipe,udp,rtp',
    '-localaddr', '127.0.0.1',
    '-probesize', '32', '-analyzeduration', '0',
    '-threads', '1',
    '-f', 'sdp', '-i', 'pipe:0',
    '-map', '0:v:0', '-an', '-sn', '-dn',
    '-filter_threads', '1', '-vf', filter,
    '-fps_mode', 'passthrough',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ];
}

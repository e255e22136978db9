import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { types as ms } from 'mediasoup';
import type { BlobStore } from '../src/identity/blobs.ts';
import type { Logger } from '../src/logger.ts';
import { childWithCall } from './call-logger.ts';
import type { CallMedia, Participant, ProducerEvent } from './call-media.ts';
import { backoffDelayMs, cancellableDelay, createFfmpegTransport, delay, exitText, ffmpegCapabilities, FfmpegChild, type CancellableDelay, type FfmpegExit } from './ffmpeg-child.ts';
import { safeEmit } from './safe-emit.ts';
import { buildRecvSdp, TAP_VIDEO_CODECS } from './sdp.ts';
import { findFreeUdpPortPair, type UdpPortPair } from './udp-ports.ts';

/**
 * The call recorder: every producer of a call (customer and teller, audio and video) recorded
 * server-side from the SFU, without re-encoding, into one WebM (VP8 + Opus; Matroska when a phone
 * sent H.264) stored in the BlobStore by its SHA-256.
 *
 *   Producer ──(router)──▶ Consumer on a PlainTransport (127.0.0.1)
 *       ──RTP/UDP loopback──▶ ffmpeg (SDP on stdin, `-c copy`) ──▶ segment .mkv in the work dir
 *   stop(): every segment finished ──▶ one ffmpeg remux (`-c copy`, concat + offsets) ──▶
 *       recording.webm ──▶ BlobStore.putFile ──▶ { sha256, bytes, durationMs, ... }
 *
 * Why one ffmpeg per producer and a remux at the end, rather than one ffmpeg per call receiving
 * every stream through one SDP:
 * - Producers come and go during a call (a participant starts sending late, reconnects with a new
 *   transport and so a new producer, a phone switches cameras). One process with one SDP cannot
 *   take a stream it was not started with, so every change would restart the muxing of ALL
 *   streams: a gap in everyone's recording, and another key frame round trip for every video.
 *   Here a change touches only its own stream: a new producer is a new segment.
 * - A failure stays local: an ffmpeg that crashes loses (at most the last second of) one stream,
 *   and its replacement writes a new segment; the manifest keeps both.
 * - ffmpeg's muxer interleaves its inputs: with one process, a stream that pauses (camera off, a
 *   participant who has not started sending) holds the others in memory until
 *   `max_interleave_delta`, and probing waits for streams that may never come.
 * The cost is one remux at stop() (a sequential copy of the data; no decoding) and placing the
 * segments on a common timeline ourselves: each segment's time 0 is its first RTP packet (a key
 * frame for video: a fresh consumer starts at one), whose wall-clock time the consumer's trace
 * event reports; the remux shifts each track by its offset from the earliest first packet and
 * keeps the gaps between segments of a track (concat `duration`). Within a segment, time comes
 * from the sender's RTP timestamps, as in any RTP recording.
 *
 * Segments are Matroska written with 1 s clusters and flushed per packet, so a crash loses at most
 * about a second; the final file is WebM when every track is VP8/VP9/Opus (Chromium plays it),
 * Matroska otherwise. Tracks in the final file: customer video, customer audio, teller video,
 * teller audio (those that have media), titled so; a player without track selection plays the
 * first video and the first audio track, the customer's.
 *
 * Finishing a segment cleanly: ffmpeg acts on SIGINT only between packets (blocked on a silent
 * socket it waits forever), and a second signal aborts the writing of the trailer (cues,
 * duration). So the recorder closes the transport, lets ffmpeg drain its socket, and sends it an
 * RTCP BYE on its RTCP port: ffmpeg's RTP demuxer takes a BYE on every stream as the end of the
 * input and finishes the file normally, at once, whether or not media was flowing. Signals are
 * only the fallback (see README, "Recorder").
 */

export type RecorderEndReason =
  /** stop() was called. */
  | 'stopped'
  /** The call's router closed (the call ended, or its worker died): the recorder finished by itself. */
  | 'router_closed';

/** Why a segment ended. */
export type SegmentEnd = RecorderEndReason | 'producer_closed' | 'crashed' | 'stalled';

export interface RecordingTrack {
  participant: Participant;
  kind: 'audio' | 'video';
  /** ffmpeg's codec name: `vp8`, `opus`, `h264`. */
  codec: string;
  /** Where the track's first media is in the recording (ms from its start). */
  startMs: number;
  /** Segments joined into this track (more than one after a reconnect or a restart). */
  segments: number;
}

export interface RecordingSegment {
  participant: Participant;
  kind: 'audio' | 'video';
  codec: string;
  producerId: string;
  /** First and last moment of the segment on the recording's timeline (ms; the end is when it was finished). */
  startMs: number;
  endMs: number;
  end: SegmentEnd;
}

export interface RecordingResult {
  /** SHA-256 of the recording: its name in the BlobStore, and `evidence.recording.sha256` in the record. */
  sha256: string;
  bytes: number;
  /** The recording's duration as its container states it (ffprobe). */
  durationMs: number;
  /** Epoch ms of the recording's time 0 (the first media packet of any track). */
  startedAt: number;
  /** Epoch ms when the last segment finished. */
  endedAt: number;
  container: 'webm' | 'matroska';
  mimeType: 'video/webm' | 'video/x-matroska';
  /** In the file's stream order. */
  tracks: RecordingTrack[];
  /** Every segment that holds media, in the order they started. */
  segments: RecordingSegment[];
  /** ffmpeg processes replaced after a crash or stall. */
  restarts: number;
  /** Where the BlobStore keeps it. */
  path: string;
}

export interface RecorderClosedEvent {
  reason: RecorderEndReason;
  result?: RecordingResult;
  error?: RecorderError;
}

export interface RecorderRestartEvent {
  participant: Participant;
  kind: 'audio' | 'video';
  /** Consecutive failures of this stream so far. */
  failures: number;
  delayMs: number;
  reason: string;
}

export type CallRecorderEvents = {
  /** A stream's ffmpeg failed and another is about to be started (logged too). */
  restart: [RecorderRestartEvent];
  /** Emitted once, when the recording is stored (result) or could not be (error). */
  closed: [RecorderClosedEvent];
};

export type RecorderErrorCode =
  /** An option out of range, or no router/producers/ids given. */
  | 'bad_option'
  /** The ffmpeg executable could not be run. */
  | 'ffmpeg_missing'
  /** No stream could be started. */
  | 'ffmpeg_failed'
  /** Nothing was recorded (no producer ever sent a packet). */
  | 'empty'
  /** The final remux failed; the segments and the manifest are kept in the work dir. */
  | 'mux_failed'
  /** The BlobStore could not take the recording; the work dir is kept. */
  | 'store_failed'
  /** The recorder was stopped (while starting). */
  | 'closed';

/** A failure of the recorder (server-internal; never sent to a client). */
export class RecorderError extends Error {
  constructor(
    readonly code: RecorderErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RecorderError';
  }
}

export interface RecorderStats {
  /** Producers recorded (or being recorded) so far. */
  tracks: number;
  /** Segments that have run (the manifest's length). */
  segments: number;
  /** ffmpeg processes replaced after a failure. */
  restarts: number;
  keyFrameRequests: number;
  /** The running ffmpeg processes. */
  pids: number[];
  /** `participant/kind` of the running segments whose first packet has gone to ffmpeg. */
  recording: string[];
}

export interface RecorderProducer {
  participant: Participant;
  producer: ms.Producer;
}

export interface CallRecorderOptions {
  /** The call: its router, its current producers, and those that appear later ('producer' event). */
  media?: CallMedia;
  /** Without `media`: the router, and the producers to record (add later ones with addProducer()). */
  router?: ms.Router;
  producers?: readonly RecorderProducer[];
  /** Default: the media's. Required without `media`. */
  sessionId?: string;
  callId?: string;
  /** The call's work folder (under DATA_DIR; created with mode 0700). Emptied and removed after the recording is stored. */
  dir: string;
  /** Where the finished recording goes. */
  blobs: BlobStore;
  logger: Logger;
  /** Default `ffmpeg` (PATH). */
  ffmpegPath?: string;
  /** Default: `ffprobe` next to `ffmpegPath`. */
  ffprobePath?: string;
  /** Until a video segment's first key frame reaches ffmpeg, ask for one this often (default 1000 ms). */
  keyFrameRetryMs?: number;
  /** Consecutive failures of one stream tolerated before that stream is given up (default 5). */
  maxRestarts?: number;
  /** Wait before the n-th consecutive restart (the last value repeats). */
  restartBackoffMs?: readonly number[];
  /** A segment that recorded for this long was healthy: its failure counts as the first again (default 10 s). */
  stableAfterMs?: number;
  /** RTP keeps reaching ffmpeg but its file has not grown for this long: replace it (default 10 s). */
  stallRestartMs?: number;
  /** How long ffmpeg may take to bind its ports (default 5000 ms). */
  listenTimeoutMs?: number;
  /** After the RTCP BYE, how long ffmpeg may take to finish its file before it is interrupted (default 5000 ms). */
  finishTimeoutMs?: number;
  /** After a signal, SIGKILL this long later (default 2000 ms). */
  killTimeoutMs?: number;
  /** Longest the final remux may take (default 10 min). */
  muxTimeoutMs?: number;
  /** Keep the segments, lists and manifest after storing (debugging; default false). */
  keepWorkFiles?: boolean;
}

const DEFAULTS = {
  ffmpegPath: 'ffmpeg',
  keyFrameRetryMs: 1000,
  maxRestarts: 5,
  restartBackoffMs: [250, 1000, 2000, 4000, 8000],
  stableAfterMs: 10_000,
  stallRestartMs: 10_000,
  listenTimeoutMs: 5000,
  finishTimeoutMs: 5000,
  killTimeoutMs: 2000,
  muxTimeoutMs: 600_000,
} as const;

/** After the transport closed, time for ffmpeg to read what is still in its socket before the BYE. */
const DRAIN_MS = 100;
/** The BYE is sent again this often until ffmpeg exits (UDP). */
const BYE_RESEND_MS = 500;
/** How often a running segment's progress (file size vs RTP sent) is checked. */
const STALL_CHECK_MS = 2000;
/** RTP packets sent without the file growing that make a stall (not just a quiet moment). */
const STALL_MIN_PACKETS = 20;
/** Stream order in the final file: the customer first (what a simple player shows and plays). */
const ORDER: ReadonlyArray<[Participant, 'audio' | 'video']> = [
  ['customer', 'video'],
  ['customer', 'audio'],
  ['teller', 'video'],
  ['teller', 'audio'],
];
/** Codecs a WebM file may hold; anything else makes the recording Matroska. */
const WEBM_CODECS = new Set(['vp8', 'vp9', 'av1', 'opus', 'vorbis']);

interface Track {
  participant: Participant;
  kind: 'audio' | 'video';
  producer: ms.Producer;
  state: 'active' | 'ended' | 'failed';
  failures: number;
  segment?: Segment;
  backoffWait?: CancellableDelay;
  onClose: () => void;
}

interface Segment {
  seq: number;
  track: Track;
  file: string;
  path: string;
  state: 'starting' | 'running' | 'ended';
  createdAt: number;
  transport?: ms.PlainTransport;
  consumer?: ms.Consumer;
  ports?: UdpPortPair;
  ssrc?: number;
  /** ffmpeg's codec name (vp8, opus, h264). */
  codec?: string;
  ffmpeg?: FfmpegChild<null>;
  runningAt?: number;
  /** Wall-clock time of the first RTP packet the consumer sent to ffmpeg (a key frame for video). */
  firstPacketAt?: number;
  endedAt?: number;
  end?: SegmentEnd;
  lastKeyFrameRequestAt: number;
  progress?: { size: number; packets: number; at: number; checkedAt: number; pending: boolean };
  ending?: Promise<void>;
}

interface Group {
  participant: Participant;
  kind: 'audio' | 'video';
  codec: string;
  segments: Segment[];
}

export class CallRecorder extends EventEmitter<CallRecorderEvents> {
  readonly sessionId: string;
  readonly callId: string;
  readonly dir: string;
  private readonly router: ms.Router;
  private readonly media: CallMedia | undefined;
  private readonly blobs: BlobStore;
  private readonly log: Logger;
  private readonly opts: Required<Omit<CallRecorderOptions, 'media' | 'router' | 'producers' | 'sessionId' | 'callId' | 'dir' | 'blobs' | 'logger'>>;
  private readonly rtpCapabilities: ms.RtpCapabilities;
  private readonly tracks = new Map<string, Track>();
  /** Segments that reached ffmpeg running, in start order (the manifest). */
  private readonly segments: Segment[] = [];
  private seq = 0;
  private restarts = 0;
  private keyFrameRequests = 0;
  private readonly createdAt = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private byeSocket: Promise<dgram.Socket> | undefined;
  private manifestWrite: Promise<void> = Promise.resolve();
  private endReason: RecorderEndReason | undefined;
  private finishing: Promise<RecordingResult> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly onRouterClose = () => void this.finish('router_closed').catch(() => undefined);
  private readonly onMediaProducer = (e: ProducerEvent) => {
    const producer = this.media?.getProducer(e.participant, e.kind);
    if (producer && producer.id === e.producerId) this.addProducer(e.participant, producer);
  };

  private constructor(opts: CallRecorderOptions, router: ms.Router, sessionId: string, callId: string) {
    super();
    this.router = router;
    this.media = opts.media;
    this.sessionId = sessionId;
    this.callId = callId;
    this.dir = path.resolve(opts.dir);
    this.blobs = opts.blobs;
    this.log = childWithCall(opts.logger, sessionId, callId).child({ component: 'recorder' });
    const ffmpegPath = opts.ffmpegPath ?? DEFAULTS.ffmpegPath;
    this.opts = {
      ffmpegPath,
      ffprobePath: opts.ffprobePath ?? siblingFfprobe(ffmpegPath),
      keyFrameRetryMs: opts.keyFrameRetryMs ?? DEFAULTS.keyFrameRetryMs,
      maxRestarts: opts.maxRestarts ?? DEFAULTS.maxRestarts,
      restartBackoffMs: opts.restartBackoffMs ?? DEFAULTS.restartBackoffMs,
      stableAfterMs: opts.stableAfterMs ?? DEFAULTS.stableAfterMs,
      stallRestartMs: opts.stallRestartMs ?? DEFAULTS.stallRestartMs,
      listenTimeoutMs: opts.listenTimeoutMs ?? DEFAULTS.listenTimeoutMs,
      finishTimeoutMs: opts.finishTimeoutMs ?? DEFAULTS.finishTimeoutMs,
      killTimeoutMs: opts.killTimeoutMs ?? DEFAULTS.killTimeoutMs,
      muxTimeoutMs: opts.muxTimeoutMs ?? DEFAULTS.muxTimeoutMs,
      keepWorkFiles: opts.keepWorkFiles ?? false,
    };
    if (!Number.isInteger(this.opts.maxRestarts) || this.opts.maxRestarts < 0) throw new RecorderError('bad_option', 'maxRestarts must be a non-negative integer');
    if (this.opts.restartBackoffMs.length === 0) throw new RecorderError('bad_option', 'restartBackoffMs must not be empty');
    for (const key of ['keyFrameRetryMs', 'stallRestartMs', 'listenTimeoutMs', 'finishTimeoutMs', 'killTimeoutMs', 'muxTimeoutMs'] as const) {
      if (!(this.opts[key] > 0)) throw new RecorderError('bad_option', `${key} must be positive`);
    }
    // The router's Opus, VP8 and H.264, plain (see ffmpegCapabilities): what reaches ffmpeg matches its SDP.
    this.rtpCapabilities = ffmpegCapabilities(router, ['audio/opus', ...TAP_VIDEO_CODECS]);
  }

  /**
   * Starts recording: one pipeline per producer given (or, with `media`, per current producer of
   * the call; later ones are added as they appear). Resolves once every initial pipeline is up
   * (or given up, logged); rejects with RecorderError if ffmpeg cannot be run or no pipeline could
   * start, leaving nothing behind. With no producer yet, it resolves at once and waits for them.
   */
  static async start(opts: CallRecorderOptions): Promise<CallRecorder> {
    const router = opts.media?.router ?? opts.router;
    const sessionId = opts.sessionId ?? opts.media?.sessionId;
    const callId = opts.callId ?? opts.media?.callId;
    if (!router) throw new RecorderError('bad_option', 'the recorder needs the call media or a router');
    if (!sessionId || !callId) throw new RecorderError('bad_option', 'sessionId and callId are required');
    if (!opts.dir) throw new RecorderError('bad_option', 'dir is required');
    if (router.closed || opts.media?.closed) throw new RecorderError('closed', 'the call media is already closed');
    const rec = new CallRecorder(opts, router, sessionId, callId);
    await fs.mkdir(rec.dir, { recursive: true, mode: 0o700 });
    const initial: RecorderProducer[] = [...(opts.producers ?? [])];
    if (opts.media) {
      for (const [participant, kind] of ORDER) {
        const producer = opts.media.getProducer(participant, kind);
        if (producer) initial.push({ participant, producer });
      }
      opts.media.on('producer', rec.onMediaProducer);
    }
    router.observer.once('close', rec.onRouterClose);
    rec.log.info({ dir: rec.dir, producers: initial.map((p) => `${p.participant}/${p.producer.kind}`) }, 'recorder starting');
    const launches = initial.map((p) => rec.addTrack(p.participant, p.producer)).filter((l): l is Promise<void> => l !== undefined);
    const outcomes = await Promise.allSettled(launches);
    // A producer that closed while starting is not a failure (its participant may come back).
    const ended = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof RecorderError && o.reason.code === 'closed').length;
    const failures = outcomes
      .filter((o): o is PromiseRejectedResult => o.status === 'rejected')
      .map((o) => o.reason as unknown)
      .filter((e) => !(e instanceof RecorderError && e.code === 'closed'));
    const missing = failures.find((e) => e instanceof RecorderError && e.code === 'ffmpeg_missing');
    if (missing || (failures.length > 0 && failures.length + ended === launches.length && !rec.endReason)) {
      const error = (missing ?? failures[0]) as RecorderError;
      rec.abort();
      await Promise.all(rec.runningSegments().map((s) => rec.endSegment(s, 'stopped')));
      await Promise.all([...rec.inflight].map((l) => l.catch(() => undefined)));
      await rec.removeWorkFiles();
      rec.log.error({ err: error }, 'recorder could not start');
      throw error instanceof RecorderError ? error : new RecorderError('ffmpeg_failed', String(error), { cause: error });
    }
    rec.watchdog = setInterval(() => rec.tick(), Math.min(rec.opts.keyFrameRetryMs, STALL_CHECK_MS));
    rec.watchdog.unref();
    return rec;
  }

  /**
   * Records one more producer (a participant who starts sending late, or reconnected with a new
   * producer). Idempotent per producer; ignored once the recorder is stopping. Its pipeline starts
   * in the background; failures are logged (and retried like a crash).
   */
  addProducer(participant: Participant, producer: ms.Producer): void {
    const launch = this.addTrack(participant, producer);
    launch?.catch((err: unknown) => {
      if (!this.endReason) this.log.error({ err, participant, kind: producer.kind, producerId: producer.id }, 'recorder could not record a stream');
    });
  }

  get closed(): boolean {
    return this.endReason !== undefined;
  }

  stats(): RecorderStats {
    const running = this.runningSegments();
    return {
      tracks: this.tracks.size,
      segments: this.segments.length,
      restarts: this.restarts,
      keyFrameRequests: this.keyFrameRequests,
      pids: running.flatMap((s) => (s.ffmpeg?.pid ? [s.ffmpeg.pid] : [])),
      recording: running.filter((s) => s.firstPacketAt !== undefined).map((s) => `${s.track.participant}/${s.track.kind}`),
    };
  }

  /** The running pipelines (for tests and diagnostics). */
  get endpoints(): Array<{ participant: Participant; kind: 'audio' | 'video'; pid: number; rtpPort: number; rtcpPort: number; transportId: string; transportPort: number; file: string }> {
    return this.runningSegments().flatMap((s) =>
      s.ffmpeg?.pid && s.ports && s.transport
        ? [{ participant: s.track.participant, kind: s.track.kind, pid: s.ffmpeg.pid, ...s.ports, transportId: s.transport.id, transportPort: s.transport.tuple.localPort, file: s.path }]
        : [],
    );
  }

  /**
   * Finishes every segment, joins them into one file, stores it and resolves with what goes into
   * the evidence. Idempotent: every call (and the end by itself when the router closes) gets the
   * same promise. Rejects with RecorderError `empty`, `mux_failed` or `store_failed`.
   */
  stop(): Promise<RecordingResult> {
    return this.finish('stopped');
  }

  // ---------------------------------------------------------------------------------------------
  // Tracks and pipelines

  private addTrack(participant: Participant, producer: ms.Producer): Promise<void> | undefined {
    if (this.endReason || producer.closed || this.tracks.has(producer.id)) return undefined;
    const kind = producer.kind;
    const mime = (producer.rtpParameters.codecs[0]?.mimeType ?? '').toLowerCase();
    if (!this.rtpCapabilities.codecs?.some((c) => c.mimeType.toLowerCase() === mime)) {
      this.log.warn({ participant, kind, producerId: producer.id, codec: mime }, 'recorder cannot record this codec');
      return undefined;
    }
    const track: Track = {
      participant,
      kind,
      producer,
      state: 'active',
      failures: 0,
      onClose: () => this.onProducerClose(track),
    };
    this.tracks.set(producer.id, track);
    producer.observer.once('close', track.onClose);
    this.log.info({ participant, kind, producerId: producer.id, codec: mime }, 'recording a stream');
    return this.trackWork(this.launchUntilUp(track));
  }

  private onProducerClose(track: Track): void {
    if (track.state !== 'active') return;
    track.state = 'ended';
    this.cancelBackoff(track);
    const seg = track.segment;
    // A segment still starting notices by itself (launch checks the track's state after each step).
    if (seg?.state === 'running') void this.endSegment(seg, this.router.closed ? 'router_closed' : 'producer_closed');
  }

  /** Starts pipelines for a track until one runs; retryable failures back off, at most `maxRestarts` in a row. */
  private async launchUntilUp(track: Track): Promise<void> {
    for (;;) {
      if (this.endReason || track.state !== 'active') throw new RecorderError('closed', 'the recorder or the stream ended');
      try {
        await this.launch(track);
        return;
      } catch (err) {
        if (this.endReason || track.state !== 'active') throw new RecorderError('closed', 'the recorder or the stream ended', { cause: err });
        if (err instanceof RecorderError && err.code !== 'ffmpeg_failed') throw err;
        await this.backoff(track, err instanceof Error ? err.message : String(err));
      }
    }
  }

  private async backoff(track: Track, reason: string): Promise<void> {
    track.failures++;
    if (track.failures > this.opts.maxRestarts) {
      track.state = 'failed';
      const error = new RecorderError('ffmpeg_failed', `recording ${track.participant}/${track.kind} failed ${track.failures} times in a row; last: ${reason}`);
      this.log.error({ participant: track.participant, kind: track.kind, failures: track.failures, reason }, 'recorder gave up a stream');
      throw error;
    }
    const delayMs = backoffDelayMs(this.opts.restartBackoffMs, track.failures);
    this.log.warn({ participant: track.participant, kind: track.kind, failures: track.failures, maxRestarts: this.opts.maxRestarts, delayMs, reason }, 'recorder restarting a stream');
    this.safeEmit('restart', { participant: track.participant, kind: track.kind, failures: track.failures, delayMs, reason });
    track.backoffWait = cancellableDelay(delayMs);
    await track.backoffWait.done;
    track.backoffWait = undefined;
  }

  private cancelBackoff(track: Track): void {
    track.backoffWait?.cancel();
    track.backoffWait = undefined;
  }

  /**
   * One segment, in the order that loses nothing (as the frame tap): transport and paused consumer,
   * a free port pair, ffmpeg (SDP on stdin), and only once ffmpeg holds its ports: connect, the
   * first-packet trace, resume, a key frame request. A failure tears down what was built.
   */
  private async launch(track: Track): Promise<void> {
    const seq = ++this.seq;
    const file = `seg-${String(seq).padStart(3, '0')}-${track.participant}-${track.kind}.mkv`;
    const seg: Segment = {
      seq,
      track,
      file,
      path: path.join(this.dir, file),
      state: 'starting',
      createdAt: Date.now(),
      lastKeyFrameRequestAt: 0,
    };
    track.segment = seg;
    const live = () => {
      if (this.endReason || track.state !== 'active' || seg.state !== 'starting') throw new RecorderError('closed', 'the recorder or the stream ended');
    };
    try {
      // ffmpeg reads RTCP on rtpPort + 1 (see createFfmpegTransport), where the BYE goes too.
      seg.transport = await createFfmpegTransport(this.router, { recorder: true, callId: this.callId });
      live();
      seg.consumer = await seg.transport.consume({ producerId: track.producer.id, rtpCapabilities: this.rtpCapabilities, paused: true, appData: { recorder: true } });
      live();
      const codec = seg.consumer.rtpParameters.codecs[0]!;
      seg.codec = codec.mimeType.split('/')[1]!.toLowerCase();
      seg.ssrc = seg.consumer.rtpParameters.encodings?.[0]?.ssrc;
      seg.ports = await findFreeUdpPortPair('127.0.0.1');
      live();
      const sdp = buildRecorderSdp({ rtpPort: seg.ports.rtpPort, codec, name: `recorder ${this.callId}` });
      // Created 0600 before ffmpeg opens it (-y truncates and keeps the mode): recordings are personal data.
      await (await fs.open(seg.path, 'w', 0o600)).close();
      live();
      const ffmpeg = new FfmpegChild<null>(this.opts.ffmpegPath, segmentArgs(seg.path), 'ignore', (exit) => this.onExit(seg, exit));
      seg.ffmpeg = ffmpeg;
      await ffmpeg.listen(this.opts.ffmpegPath, {
        sdp,
        ports: [seg.ports.rtpPort, seg.ports.rtcpPort],
        timeoutMs: this.opts.listenTimeoutMs,
        stopped: () => this.endReason !== undefined || track.state !== 'active',
        error: (code, message, options) => new RecorderError(code, message, options),
      });
      live();
      await seg.transport.connect({ ip: '127.0.0.1', port: seg.ports.rtpPort, rtcpPort: seg.ports.rtcpPort });
      live();
      // The first packet the consumer sends (for video a key frame: a new consumer waits for one)
      // is time 0 of the segment; its wall-clock time places the segment on the recording's timeline.
      const consumer = seg.consumer;
      const onTrace = () => {
        consumer.off('trace', onTrace);
        if (seg.firstPacketAt !== undefined) return;
        seg.firstPacketAt = Date.now();
        consumer.enableTraceEvent([]).catch(() => undefined);
        this.log.info({ participant: track.participant, kind: track.kind, segment: seq, afterMs: seg.firstPacketAt - seg.createdAt }, 'recorder: first media sent to ffmpeg');
        this.writeManifest();
      };
      consumer.on('trace', onTrace);
      await consumer.enableTraceEvent([track.kind === 'video' ? 'keyframe' : 'rtp']);
      live();
      await consumer.resume();
      live();
      if (ffmpeg.exit) throw new RecorderError('ffmpeg_failed', `ffmpeg exited while starting (${exitText(ffmpeg.exit.code, ffmpeg.exit.signal)}): ${ffmpeg.tail()}`);
      seg.state = 'running';
      seg.runningAt = Date.now();
      this.segments.push(seg);
      if (track.failures > 0) this.restarts++;
      this.log.info(
        { participant: track.participant, kind: track.kind, codec: seg.codec, pid: ffmpeg.pid, rtpPort: seg.ports.rtpPort, transportId: seg.transport.id, segment: seq, file },
        'recorder segment running',
      );
      if (track.kind === 'video') this.requestKeyFrame(seg, 'start');
      this.writeManifest();
    } catch (err) {
      await this.killSegment(seg);
      await fs.rm(seg.path, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  private onExit(seg: Segment, { code, signal }: FfmpegExit): void {
    if (seg.state !== 'running' || seg.ending || this.endReason) return; // ended on purpose, or launch() handles it
    this.failSegment(seg, `ffmpeg exited unexpectedly (${exitText(code, signal)})`, 'crashed', { code, signal });
  }

  /** A running segment failed (crash, stall): log it, end it, start a new segment for the stream after the backoff. */
  private failSegment(seg: Segment, reason: string, end: 'crashed' | 'stalled', fields: Record<string, unknown>): void {
    const track = seg.track;
    const now = Date.now();
    this.log.warn(
      { ...fields, participant: track.participant, kind: track.kind, pid: seg.ffmpeg?.pid, stderr: seg.ffmpeg?.tail() ?? '(no output)', segment: seg.seq, ranMs: now - seg.createdAt },
      reason,
    );
    if (seg.firstPacketAt !== undefined && now - seg.firstPacketAt >= this.opts.stableAfterMs) track.failures = 0;
    void this.endSegment(seg, end);
    if (track.state !== 'active') return;
    void this.trackWork(
      (async () => {
        await this.backoff(track, reason);
        await this.launchUntilUp(track);
      })(),
    ).catch(() => undefined); // logged by backoff() when given up; quiet when the recorder or the stream ended
  }

  /**
   * Ends a running segment. Cleanly (stop, producer or router closed): close the transport, give
   * ffmpeg DRAIN_MS to read what is in its socket, then an RTCP BYE on its RTCP port ends its input
   * and it writes the trailer (cues, duration) and exits; signals only if it does not. After a
   * crash or stall: signals at once (there is nothing clean left to do). Idempotent.
   */
  private endSegment(seg: Segment, end: SegmentEnd): Promise<void> {
    if (seg.ending) return seg.ending;
    const graceful = seg.state === 'running' && end !== 'crashed' && end !== 'stalled';
    seg.state = 'ended';
    seg.end = end;
    seg.endedAt = Date.now();
    seg.ending = (async () => {
      if (seg.transport && !seg.transport.closed) seg.transport.close();
      const ffmpeg = seg.ffmpeg;
      if (graceful && ffmpeg?.alive) {
        await Promise.race([ffmpeg.exited, delay(DRAIN_MS)]);
        const deadline = Date.now() + this.opts.finishTimeoutMs;
        while (ffmpeg.alive && Date.now() < deadline) {
          await this.sendBye(seg);
          await Promise.race([ffmpeg.exited, delay(Math.min(BYE_RESEND_MS, Math.max(0, deadline - Date.now())))]);
        }
        if (ffmpeg.alive) this.log.warn({ pid: ffmpeg.pid, segment: seg.seq, stderr: ffmpeg.tail() }, 'ffmpeg did not finish after the RTCP BYE; stopping it with signals');
      }
      await this.killSegment(seg);
      const size = await fs.stat(seg.path).then((s) => s.size, () => 0);
      this.log.info(
        { participant: seg.track.participant, kind: seg.track.kind, segment: seg.seq, end, bytes: size, exit: seg.ffmpeg?.exit ? exitText(seg.ffmpeg.exit.code, seg.ffmpeg.exit.signal) : undefined, recorded: seg.firstPacketAt !== undefined },
        'recorder segment ended',
      );
      this.writeManifest();
    })();
    return seg.ending;
  }

  /**
   * Tears a pipeline down without ceremony: transport first, then SIGINT (ffmpeg still writes its
   * trailer if it acts on it between packets), a second SIGINT 250 ms later (interrupts a read
   * blocked on a silent socket; what was flushed stays in the file), SIGKILL after killTimeoutMs.
   * Safe to call again (a launch that was interrupted calls it for what it built).
   */
  private killSegment(seg: Segment): Promise<void> {
    if (seg.transport && !seg.transport.closed) seg.transport.close();
    const ffmpeg = seg.ffmpeg;
    if (!ffmpeg) return Promise.resolve();
    return ffmpeg.kill('SIGINT', this.opts.killTimeoutMs, () => this.log.warn({ pid: ffmpeg.pid, segment: seg.seq }, 'ffmpeg ignored SIGINT; sending SIGKILL'));
  }

  /** RTCP RR + BYE (a compound packet; ffmpeg ignores RTCP shorter than 12 bytes) to ffmpeg's RTCP port. */
  private async sendBye(seg: Segment): Promise<void> {
    if (!seg.ports) return;
    this.byeSocket ??= new Promise<dgram.Socket>((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, '127.0.0.1', () => {
        s.off('error', reject);
        s.on('error', (err) => this.log.debug({ err }, 'recorder: RTCP socket error'));
        resolve(s);
      });
    });
    try {
      const socket = await this.byeSocket;
      await new Promise<void>((resolve) => socket.send(rtcpBye(seg.ssrc ?? 0), seg.ports!.rtcpPort, '127.0.0.1', () => resolve()));
    } catch (err) {
      this.log.warn({ err }, 'recorder: could not send the RTCP BYE');
    }
  }

  /** Remembers work that builds pipelines until it settles (see finish()). */
  private trackWork<T>(work: Promise<T>): Promise<T> {
    this.inflight.add(work);
    void work.then(
      () => this.inflight.delete(work),
      () => this.inflight.delete(work),
    );
    return work;
  }

  private runningSegments(): Segment[] {
    return [...this.tracks.values()].flatMap((t) => (t.segment?.state === 'running' ? [t.segment] : []));
  }

  // ---------------------------------------------------------------------------------------------
  // Watchdog: key frames until the first one is written; stalls

  private tick(): void {
    if (this.endReason) return;
    const now = Date.now();
    for (const seg of this.runningSegments()) {
      const producer = seg.track.producer;
      if (seg.firstPacketAt === undefined) {
        // Not while the producer is paused (camera off): there is nothing to send a key frame of.
        if (seg.track.kind === 'video' && !producer.paused && now - seg.lastKeyFrameRequestAt >= this.opts.keyFrameRetryMs * 0.9) this.requestKeyFrame(seg, 'no_key_frame_yet');
        continue;
      }
      if (!seg.progress || now - seg.progress.checkedAt >= Math.min(STALL_CHECK_MS, this.opts.stallRestartMs / 2)) void this.checkProgress(seg, now);
    }
  }

  /** RTP keeps going to ffmpeg but its file does not grow (1 s clusters, flushed): ffmpeg is stuck; replace it. */
  private async checkProgress(seg: Segment, now: number): Promise<void> {
    const consumer = seg.consumer;
    if (!consumer || seg.progress?.pending) return;
    const prev = seg.progress;
    if (prev) prev.pending = true;
    let packets: number | undefined;
    let size: number | undefined;
    try {
      const stats = await consumer.getStats();
      packets = stats.find((s) => s.type === 'outbound-rtp')?.packetCount;
      size = (await fs.stat(seg.path)).size;
    } catch {
      // closing, or the file went away (reported when the segment ends)
    }
    if (prev) prev.pending = false;
    if (packets === undefined || size === undefined || seg.state !== 'running' || this.endReason) return;
    if (!prev || size !== prev.size || packets < prev.packets) {
      seg.progress = { size, packets, at: now, checkedAt: now, pending: false };
      return;
    }
    prev.checkedAt = now;
    if (packets - prev.packets >= STALL_MIN_PACKETS && now - prev.at >= this.opts.stallRestartMs) {
      this.failSegment(seg, 'ffmpeg writes nothing although RTP arrives: replacing it', 'stalled', { stalledMs: now - prev.at, packetsSent: packets - prev.packets });
    }
  }

  private requestKeyFrame(seg: Segment, why: 'start' | 'no_key_frame_yet'): void {
    const consumer = seg.consumer;
    if (!consumer || consumer.closed) return;
    seg.lastKeyFrameRequestAt = Date.now();
    this.keyFrameRequests++;
    this.log.debug({ why, participant: seg.track.participant, segment: seg.seq }, 'recorder: requesting a key frame');
    consumer.requestKeyFrame().catch((err: unknown) => {
      if (!consumer.closed) this.log.warn({ err, why }, 'recorder: key frame request failed');
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Finishing: segments → one file → BlobStore

  private finish(reason: RecorderEndReason): Promise<RecordingResult> {
    if (this.finishing) return this.finishing;
    this.abort(reason);
    this.finishing = (async () => {
      const end: SegmentEnd = reason === 'router_closed' ? 'router_closed' : 'stopped';
      await Promise.all(this.runningSegments().map((s) => this.endSegment(s, end)));
      // Launches and restarts under way notice the end at their next step and tear down what they built.
      await Promise.all([...this.inflight].map((l) => l.catch(() => undefined)));
      await Promise.all(this.segments.map((s) => s.ending ?? this.endSegment(s, end)));
      const endedAt = Math.max(0, ...this.segments.map((s) => s.endedAt ?? 0)) || Date.now();
      if (this.byeSocket) {
        const socket = await this.byeSocket.catch(() => undefined);
        socket?.close();
      }
      this.writeManifest();
      await this.manifestWrite;
      return this.assemble(endedAt);
    })();
    this.finishing.then(
      (result) => {
        this.log.info(
          { reason, sha256: result.sha256, bytes: result.bytes, durationMs: result.durationMs, tracks: result.tracks.map((t) => `${t.participant}/${t.kind}/${t.codec}`), segments: result.segments.length, restarts: result.restarts },
          'recording stored',
        );
        this.safeEmit('closed', { reason, result });
      },
      (err: unknown) => {
        const error = err instanceof RecorderError ? err : new RecorderError('mux_failed', String(err), { cause: err });
        if (error.code === 'empty') this.log.warn({ reason }, 'recorder stopped: nothing was recorded');
        else this.log.error({ reason, err: error, dir: this.dir }, 'recording could not be stored; the segments are kept');
        this.safeEmit('closed', { reason, error });
      },
    );
    return this.finishing;
  }

  /** Stops taking anything new: listeners off, watchdog and backoffs cancelled. */
  private abort(reason: RecorderEndReason = 'stopped'): void {
    this.endReason ??= reason;
    if (this.watchdog) clearInterval(this.watchdog);
    this.router.observer.off('close', this.onRouterClose);
    this.media?.off('producer', this.onMediaProducer);
    for (const track of this.tracks.values()) {
      track.producer.observer.off('close', track.onClose);
      this.cancelBackoff(track);
    }
  }

  private async assemble(endedAt: number): Promise<RecordingResult> {
    const began = Date.now();
    // Segments that hold media: a first packet reached ffmpeg. Whether each file is readable is
    // only checked (ffprobe, in parallel) if the remux fails: the common case costs no extra process.
    let usable = this.segments.filter((s) => s.firstPacketAt !== undefined && s.codec);
    if (usable.length === 0) {
      await this.removeWorkFiles();
      throw new RecorderError('empty', 'nothing was recorded');
    }
    let muxed = await this.mux(usable);
    // At loglevel error ffmpeg says nothing unless something went wrong: an unreadable segment
    // fails the run, or (the concat demuxer giving up on a file) silently ends its track early.
    if (muxed.mux.code !== 0 || muxed.mux.stderr.trim()) {
      this.log.warn({ code: muxed.mux.code, stderr: muxed.mux.stderr.slice(-600) }, 'recorder: the remux reported errors; checking the segments');
      const readable = await Promise.all(usable.map((s) => this.hasPacket(s.path)));
      const bad = usable.filter((_, i) => !readable[i]);
      for (const seg of bad) {
        this.log.warn({ segment: seg.seq, participant: seg.track.participant, kind: seg.track.kind, end: seg.end, stderr: seg.ffmpeg?.tail() ?? '(no output)' }, 'recorder: a segment holds no readable media; left out');
      }
      usable = usable.filter((_, i) => readable[i]);
      if (usable.length === 0) {
        await this.removeWorkFiles();
        throw new RecorderError('empty', 'nothing readable was recorded');
      }
      if (bad.length > 0) muxed = await this.mux(usable);
      const { mux } = muxed;
      if (mux.code !== 0) throw new RecorderError('mux_failed', `the final remux failed (${exitText(mux.code, mux.signal)}): ${mux.stderr.slice(-600)}`);
    }
    const { groups, t0, container, finalFile } = muxed;
    const muxedAt = Date.now();
    const durationMs = await this.durationOf(finalFile);
    const storeAt = Date.now();
    let stored: Awaited<ReturnType<BlobStore['putFile']>>;
    try {
      stored = await this.blobs.putFile(finalFile);
    } catch (err) {
      throw new RecorderError('store_failed', `the BlobStore did not take the recording: ${String(err)}`, { cause: err });
    }
    this.log.debug({ muxMs: muxedAt - began, durationProbeMs: storeAt - muxedAt, storeMs: Date.now() - storeAt }, 'recorder: recording assembled');
    const result: RecordingResult = {
      sha256: stored.sha256,
      bytes: stored.size,
      durationMs,
      startedAt: t0,
      endedAt,
      container,
      mimeType: container === 'webm' ? 'video/webm' : 'video/x-matroska',
      tracks: groups.map((g) => ({ participant: g.participant, kind: g.kind, codec: g.codec, startMs: g.segments[0]!.firstPacketAt! - t0, segments: g.segments.length })),
      segments: usable.map((s) => ({
        participant: s.track.participant,
        kind: s.track.kind,
        codec: s.codec!,
        producerId: s.track.producer.id,
        startMs: s.firstPacketAt! - t0,
        endMs: Math.max(0, (s.endedAt ?? endedAt) - t0),
        end: s.end ?? 'stopped',
      })),
      restarts: this.restarts,
      path: stored.path,
    };
    this.writeManifest({ sha256: result.sha256, bytes: result.bytes, durationMs, container });
    await this.manifestWrite;
    if (!this.opts.keepWorkFiles) await this.removeWorkFiles();
    return result;
  }

  /**
   * One ffmpeg run: every track a concat list of its segments (gaps kept), shifted by its first
   * packet's offset from the earliest one, stream-copied into the final file (0600).
   */
  private async mux(usable: Segment[]) {
    const groups = groupSegments(usable);
    const t0 = Math.min(...usable.map((s) => s.firstPacketAt!));
    const container: 'webm' | 'matroska' = groups.every((g) => WEBM_CODECS.has(g.codec)) ? 'webm' : 'matroska';
    const finalFile = path.join(this.dir, container === 'webm' ? 'recording.webm' : 'recording.mkv');
    const args = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'error', '-y'];
    for (const [i, g] of groups.entries()) {
      const list = path.join(this.dir, `track-${i}.ffconcat`);
      await fs.writeFile(list, concatList(g), { mode: 0o600 });
      const offset = (g.segments[0]!.firstPacketAt! - t0) / 1000;
      args.push('-itsoffset', offset.toFixed(3), '-f', 'concat', '-i', list);
    }
    const seen = new Set<string>();
    groups.forEach((_, i) => args.push('-map', `${i}:0`));
    groups.forEach((g, i) => {
      const first = !seen.has(g.kind);
      seen.add(g.kind);
      args.push(`-metadata:s:${i}`, `title=${g.participant} ${g.kind}`, `-disposition:${i}`, first ? 'default' : '0');
    });
    args.push('-c', 'copy', '-metadata', `creation_time=${new Date(t0).toISOString()}`, '-f', container, finalFile);
    await (await fs.open(finalFile, 'w', 0o600)).close();
    const mux = await runTool(this.opts.ffmpegPath, args, this.opts.muxTimeoutMs);
    return { groups, t0, container, finalFile, mux };
  }

  private async hasPacket(file: string): Promise<boolean> {
    const r = await runTool(this.opts.ffprobePath, ['-v', 'error', '-read_intervals', '%+#1', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file], 30_000);
    return r.code === 0 && r.stdout.trim().length > 0;
  }

  private async durationOf(file: string): Promise<number> {
    const r = await runTool(this.opts.ffprobePath, ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file], 30_000);
    const seconds = Number.parseFloat(r.stdout.trim());
    if (r.code !== 0 || !Number.isFinite(seconds)) throw new RecorderError('mux_failed', `ffprobe cannot read the recording's duration: ${r.stderr.slice(-300)}`);
    return Math.round(seconds * 1000);
  }

  /** Rewrites manifest.json (atomically, in order): every segment so far, and the stored result once known. */
  private writeManifest(stored?: Record<string, unknown>): void {
    const manifest = {
      version: 1,
      sessionId: this.sessionId,
      callId: this.callId,
      createdAt: this.createdAt,
      endReason: this.endReason ?? null,
      segments: this.segments.map((s) => ({
        seq: s.seq,
        file: s.file,
        participant: s.track.participant,
        kind: s.track.kind,
        producerId: s.track.producer.id,
        codec: s.codec,
        createdAt: s.createdAt,
        firstPacketAt: s.firstPacketAt ?? null,
        endedAt: s.endedAt ?? null,
        end: s.end ?? null,
      })),
      ...(stored ? { stored } : {}),
    };
    const target = path.join(this.dir, 'manifest.json');
    const tmp = `${target}.tmp`;
    this.manifestWrite = this.manifestWrite.then(async () => {
      try {
        const h = await fs.open(tmp, 'w', 0o600);
        try {
          await h.writeFile(JSON.stringify(manifest, null, 2) + '\n');
          await h.sync();
        } finally {
          await h.close();
        }
        await fs.rename(tmp, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err }, 'recorder: could not write the manifest');
      }
    });
  }

  /** Removes what the recorder wrote into its work dir, and the dir if nothing else is in it. */
  private async removeWorkFiles(): Promise<void> {
    await this.manifestWrite;
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    const ours = names.filter((n) => /^(seg-\d+-(customer|teller)-(audio|video)\.mkv|track-\d+\.ffconcat|recording\.(webm|mkv)|manifest\.json(\.tmp)?)$/.test(n));
    await Promise.all(ours.map((n) => fs.rm(path.join(this.dir, n), { force: true })));
    await fs.rmdir(this.dir).catch(() => undefined);
  }

  private safeEmit<E extends keyof CallRecorderEvents>(event: E, ...args: CallRecorderEvents[E]): void {
    safeEmit(this as unknown as EventEmitter, this.log, 'CallRecorder', event, args);
  }
}

// -------------------------------------------------------------------------------------------------
// Helpers

export interface RecorderSdpOptions {
  rtpPort: number;
  codec: Pick<ms.RtpCodecParameters, 'mimeType' | 'payloadType' | 'clockRate' | 'channels' | 'parameters'>;
  name?: string;
}

/**
 * The SDP for one recorded stream: video as the frame tap's (buildRecvSdp: VP8, H.264), Opus as
 * one audio m-line (`opus/48000/2`, as RFC 7587 spells it whatever the channels sent).
 */
export function buildRecorderSdp({ rtpPort, codec, name = 'videoteller recorder' }: RecorderSdpOptions): string {
  if (codec.mimeType.toLowerCase() !== 'audio/opus') return buildRecvSdp({ rtpPort, codec, name });
  if (!Number.isInteger(rtpPort) || rtpPort < 1 || rtpPort > 65534) throw new TypeError(`invalid RTP port ${rtpPort}`);
  const pt = codec.payloadType;
  return (
    [
      'v=0',
      'o=- 0 0 IN IP4 127.0.0.1',
      `s=${name.replace(/[\r\n]/g, ' ')}`,
      'c=IN IP4 127.0.0.1',
      't=0 0',
      `m=audio ${rtpPort} RTP/AVP ${pt}`,
      `a=rtpmap:${pt} opus/${codec.clockRate}/2`,
      'a=recvonly',
    ].join('\r\n') + '\r\n'
  );
}

/**
 * ffmpeg for one segment: the SDP on stdin, loopback only, a tiny probe (the codec is in the SDP,
 * a video's size comes from its first packet, a key frame), stream copy into Matroska with 1 s
 * clusters flushed at once, so a crash loses about a second at most.
 */
export function segmentArgs(file: string): string[] {
  return [
    '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'warning',
    '-protocol_whitelist', 'pipe,udp,rtp',
    '-localaddr', '127.0.0.1',
    '-probesize', '32', '-analyzeduration', '0',
    '-f', 'sdp', '-i', 'pipe:0',
    '-map', '0:0', '-c', 'copy',
    '-f', 'matroska', '-cluster_time_limit', '1000', '-flush_packets', '1',
    '-y', file,
  ];
}

/** RTCP compound packet: an empty RR, then a BYE for `ssrc` (RFC 3550 6.6). */
export function rtcpBye(ssrc: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 0x80; // V=2, RC=0
  b[1] = 201; // RR
  b.writeUInt16BE(1, 2);
  b.writeUInt32BE(0x5245_4344, 4); // our own SSRC ("RECD")
  b[8] = 0x81; // V=2, SC=1
  b[9] = 203; // BYE
  b.writeUInt16BE(1, 10);
  b.writeUInt32BE(ssrc >>> 0, 12);
  return b;
}

/**
 * Segments grouped into the final file's tracks: one per participant, kind and codec, in ORDER,
 * segments by start. A segment that overlaps the previous one of its group (two producers of one
 * kind at once, which CallMedia does not allow) starts a track of its own instead.
 */
function groupSegments(segments: Segment[]): Group[] {
  const sorted = [...segments].sort((a, b) => a.firstPacketAt! - b.firstPacketAt!);
  const groups: Group[] = [];
  for (const seg of sorted) {
    const { participant, kind } = seg.track;
    const g = groups.find((x) => x.participant === participant && x.kind === kind && x.codec === seg.codec);
    const last = g?.segments[g.segments.length - 1];
    if (g && last && (last.endedAt ?? Infinity) <= seg.firstPacketAt!) g.segments.push(seg);
    else groups.push({ participant, kind, codec: seg.codec!, segments: [seg] });
  }
  const rank = (g: Group) => ORDER.findIndex(([p, k]) => p === g.participant && k === g.kind);
  return groups.map((g, i) => ({ g, i })).sort((a, b) => rank(a.g) - rank(b.g) || a.i - b.i).map(({ g }) => g);
}

/**
 * An ffconcat list of a track's segments (names relative to the list, so the demuxer's safe mode
 * accepts them). Each segment but the last lasts until the next one starts, so a gap (a
 * reconnect, a restart) stays a gap instead of pulling the rest of the track earlier.
 */
function concatList(g: Group): string {
  const lines = ['ffconcat version 1.0'];
  g.segments.forEach((seg, i) => {
    lines.push(`file '${seg.file}'`);
    const next = g.segments[i + 1];
    if (next) lines.push(`duration ${((next.firstPacketAt! - seg.firstPacketAt!) / 1000).toFixed(3)}`);
  });
  return lines.join('\n') + '\n';
}

/** Runs a tool to completion (stdout kept, stderr's end kept), SIGKILL after `timeoutMs`. */
function runTool(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout = (stdout + t).slice(-65536)));
    child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr = (stderr + t).slice(-4000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: `${stderr}${String(err)}` });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function siblingFfprobe(ffmpegPath: string): string {
  const base = path.basename(ffmpegPath);
  if (!base.startsWith('ffmpeg')) return 'ffprobe';
  return ffmpegPath.slice(0, ffmpegPath.length - base.length) + 'ffprobe' + base.slice('ffmpeg'.length);
}

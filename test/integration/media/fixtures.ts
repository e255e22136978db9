/**
 * Shared fixtures of the media integration tests: a pool on real mediasoup workers with a log
 * capture, and parameters shaped like what Chrome sends through mediasoup-client 3 (one encoding,
 * RTX for video, transport-cc, the usual header extensions).
 */
import '../../../media/worker-bin.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { types as ms } from 'mediasoup';
import { findFreeUdpPortPair } from '../../../media/udp-ports.ts';
import { createLogger, type Logger } from '../../../src/logger.ts';
import { MediaWorkerPool, type MediaWorkerPoolOptions } from '../../../media/worker-pool.ts';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger (the app's, with its redaction) writing parsed lines into an array. */
export function captureLogger(level = 'debug'): { logger: Logger; lines: LogLine[]; raw: string[] } {
  const lines: LogLine[] = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) {
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      }
      cb();
    },
  });
  return { logger: createLogger(level, stream), lines, raw };
}

export async function startPool(overrides: Partial<MediaWorkerPoolOptions> & { logger: Logger }): Promise<MediaWorkerPool> {
  return MediaWorkerPool.start({
    numWorkers: 2,
    logLevel: 'warn',
    listenIp: '127.0.0.1',
    rtcMinPort: 40000,
    rtcMaxPort: 49999,
    cpuSampleIntervalMs: 0,
    ...overrides,
  });
}

let ssrc = 100_000_000;
let cnameSeq = 0;

const commonHeaderExtensions = [
  { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4, encrypt: false, parameters: {} },
  { uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', id: 2, encrypt: false, parameters: {} },
  { uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', id: 3, encrypt: false, parameters: {} },
];

/** Opus as Chrome sends it (mid is per transport: give each producer of a transport its own). */
export function opusParameters(mid = '0'): Record<string, unknown> {
  return {
    mid,
    codecs: [
      {
        mimeType: 'audio/opus',
        payloadType: 111,
        clockRate: 48000,
        channels: 2,
        parameters: { minptime: 10, useinbandfec: 1 },
        rtcpFeedback: [{ type: 'transport-cc', parameter: '' }],
      },
    ],
    headerExtensions: [...commonHeaderExtensions, { uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 1, encrypt: false, parameters: {} }],
    encodings: [{ ssrc: ssrc++, dtx: false }],
    rtcp: { cname: `cname-${cnameSeq++}`, reducedSize: true },
  };
}

const videoFeedback = [
  { type: 'goog-remb', parameter: '' },
  { type: 'transport-cc', parameter: '' },
  { type: 'ccm', parameter: 'fir' },
  { type: 'nack', parameter: '' },
  { type: 'nack', parameter: 'pli' },
];

const videoHeaderExtensions = [
  ...commonHeaderExtensions,
  { uri: 'urn:3gpp:video-orientation', id: 13, encrypt: false, parameters: {} },
  { uri: 'urn:ietf:params:rtp-hdrext:toffset', id: 14, encrypt: false, parameters: {} },
];

/** VP8 with RTX, one encoding (no simulcast), as Chrome sends it. */
export function vp8Parameters(mid = '1'): Record<string, unknown> {
  const main = ssrc++;
  return {
    mid,
    codecs: [
      { mimeType: 'video/VP8', payloadType: 96, clockRate: 90000, parameters: {}, rtcpFeedback: videoFeedback },
      { mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 96 }, rtcpFeedback: [] },
    ],
    headerExtensions: videoHeaderExtensions,
    encodings: [{ ssrc: main, rtx: { ssrc: ssrc++ }, dtx: false }],
    rtcp: { cname: `cname-${cnameSeq++}`, reducedSize: true },
  };
}

/** H.264 constrained baseline, packetization-mode 1, as a phone without VP8 hardware sends it. */
export function h264Parameters(mid = '1'): Record<string, unknown> {
  const main = ssrc++;
  return {
    mid,
    codecs: [
      {
        mimeType: 'video/H264',
        payloadType: 102,
        clockRate: 90000,
        parameters: { 'level-asymmetry-allowed': 1, 'packetization-mode': 1, 'profile-level-id': '42e01f' },
        rtcpFeedback: videoFeedback,
      },
      { mimeType: 'video/rtx', payloadType: 103, clockRate: 90000, parameters: { apt: 102 }, rtcpFeedback: [] },
    ],
    headerExtensions: videoHeaderExtensions,
    encodings: [{ ssrc: main, rtx: { ssrc: ssrc++ }, dtx: false }],
    rtcp: { cname: `cname-${cnameSeq++}`, reducedSize: true },
  };
}

/** DTLS parameters as a browser's mediasoup-client sends them on transport 'connect'. */
export function clientDtlsParameters(): Record<string, unknown> {
  const bytes = Array.from({ length: 32 }, (_, i) => ((i * 37 + 11) & 0xff).toString(16).padStart(2, '0').toUpperCase());
  return { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: bytes.join(':') }] };
}

/** A device that can only receive H.264 (no VP8), to test that canConsume is checked. */
export function h264OnlyCapabilities(routerCaps: { codecs?: Array<Record<string, unknown>>; headerExtensions?: unknown[] }): Record<string, unknown> {
  const codecs = routerCaps.codecs ?? [];
  const h264 = codecs.find((c) => String(c['mimeType']).toLowerCase() === 'video/h264');
  const keep = codecs.filter((c) => {
    const mime = String(c['mimeType']).toLowerCase();
    if (mime === 'video/vp8') return false;
    if (mime === 'video/rtx') return (c['parameters'] as { apt?: unknown } | undefined)?.apt === h264?.['preferredPayloadType'];
    return true;
  });
  return { codecs: keep, headerExtensions: routerCaps.headerExtensions ?? [] };
}

export const sumOf = (stats: Array<{ routers: number; transports: number }>, key: 'routers' | 'transports') => stats.reduce((n, w) => n + w[key], 0);

// -------------------------------------------------------------------------------------------------
// Video fed by ffmpeg (frame tap tests)

/** A real face photo (1920×1280 JPEG) shipped with face-api. */
export const FACE_PHOTO = fileURLToPath(new URL('../../../node_modules/@vladmandic/face-api/demo/sample1.jpg', import.meta.url));

/** Runs ffmpeg to completion; resolves with its stdout, rejects with the end of its stderr. */
export function runFfmpeg(args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err = (err + b.toString('utf8')).slice(-2000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`ffmpeg exited with ${code}: ${err}`))));
  });
}

/** The face photo scaled (stretched) to width×height as a PNG in a temp folder, and its exact packed RGB. */
export async function preparePicture(width: number, height: number): Promise<{ path: string; rgb: Uint8Array; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'frame-tap-test-'));
  const png = path.join(dir, `face-${width}x${height}.png`);
  await runFfmpeg(['-i', FACE_PHOTO, '-vf', `scale=${width}:${height}`, '-frames:v', '1', png]);
  const rgb = await runFfmpeg(['-i', png, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']);
  if (rgb.length !== width * height * 3) throw new Error(`decoded ${rgb.length} bytes, expected ${width * height * 3}`);
  return { path: png, rgb: new Uint8Array(rgb), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface VideoFeed {
  transport: ms.PlainTransport;
  /** A VP8 or H.264 producer on the router, fed by the ffmpeg sender (comedia PlainTransport, like rtp-flow.test.ts). */
  producer: ms.Producer;
  /** Starts the ffmpeg sender (again after stop(): same source port, so the comedia tuple still matches). */
  start(): void;
  /** Stops the sender (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Freezes the sender (SIGSTOP) like a network stall; resume() continues the same stream (same sequence numbers and timestamps). */
  freeze(): void;
  resume(): void;
  /** Stops the sender and closes the producer's transport. */
  close(): Promise<void>;
  readonly senderPid: number | undefined;
}

let feedSsrc = 22_000_000;

/**
 * A customer camera without a browser: `ffmpeg -re -loop 1` encodes `picture` to VP8 (libvpx,
 * realtime) or H.264 (libx264 constrained baseline, packetization mode 1, as phones send it), a
 * key frame every `gop` frames (ffmpeg ignores PLIs), and sends RTP into a PlainTransport
 * producer on `router` (comedia: the transport learns ffmpeg's ports from its first packets). The producer declares PLI and FIR feedback, so key frame requests show
 * up in its stats (pliCount/firCount) as they would towards a browser.
 */
export async function startVideoFeed(
  router: ms.Router,
  picture: string,
  opts: { codec?: 'vp8' | 'h264'; fps?: number; gop?: number; send?: boolean } = {},
): Promise<VideoFeed> {
  const fps = opts.fps ?? 10;
  const gop = opts.gop ?? 10;
  const h264 = opts.codec === 'h264';
  const payloadType = h264 ? 102 : 101;
  // rtcpMux false: ffmpeg sends its sender reports from a second port, and with rtcp-mux the
  // comedia transport would lock onto whichever of the two ports spoke first.
  const transport = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: false, comedia: true });
  const ssrc = feedSsrc++;
  const producer = await transport.produce({
    kind: 'video',
    rtpParameters: {
      codecs: [
        {
          mimeType: h264 ? 'video/H264' : 'video/VP8',
          payloadType,
          clockRate: 90000,
          ...(h264 ? { parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 } } : {}),
          rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
        },
      ],
      encodings: [{ ssrc }],
    },
  });
  const src = await findFreeUdpPortPair('127.0.0.1');
  const dst = transport.tuple.localPort;
  const dstRtcp = transport.rtcpTuple!.localPort;
  const args = [
    '-hide_banner', '-nostdin', '-loglevel', 'error',
    '-re', '-loop', '1', '-framerate', String(fps), '-i', picture,
    '-vf', 'format=yuv420p',
    ...(h264
      ? ['-c:v', 'libx264', '-profile:v', 'baseline', '-level', '3.1', '-preset', 'ultrafast', '-tune', 'zerolatency']
      : ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-lag-in-frames', '0', '-auto-alt-ref', '0']),
    '-b:v', '800k', '-g', String(gop), '-keyint_min', String(gop),
    '-an', '-f', 'rtp', '-payload_type', String(payloadType), '-ssrc', String(ssrc),
    `rtp://127.0.0.1:${dst}?pkt_size=1200&rtcpport=${dstRtcp}&localrtpport=${src.rtpPort}&localrtcpport=${src.rtcpPort}`,
  ];
  return ffmpegFeed(transport, producer, args, opts.send !== false);
}

/**
 * Waits until the feed's RTP reaches the producer and its RTCP port is known (comedia learns it
 * from the sender's first report), so that key frame requests can reach the sender as PLIs.
 */
export async function waitFlowing(feed: VideoFeed, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await feed.producer.getStats();
    if ((stats[0]?.packetCount ?? 0) > 0 && feed.transport.rtcpTuple?.remotePort) return;
    if (Date.now() > deadline) throw new Error('the ffmpeg feed did not reach the producer');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Per-channel mean of packed RGB. */
export function meanRgb(rgb: Uint8Array): [number, number, number] {
  const sum = [0, 0, 0];
  for (let i = 0; i < rgb.length; i += 3) {
    sum[0]! += rgb[i]!;
    sum[1]! += rgb[i + 1]!;
    sum[2]! += rgb[i + 2]!;
  }
  const n = rgb.length / 3;
  return [sum[0]! / n, sum[1]! / n, sum[2]! / n];
}

/** Mean luma (0..255) of each cell of a cols×rows grid over packed RGB, row-major: a coarse picture to compare. */
export function lumaGrid(rgb: Uint8Array, width: number, height: number, cols = 8, rows = 6): number[] {
  const sums = new Array<number>(cols * rows).fill(0);
  const counts = new Array<number>(cols * rows).fill(0);
  for (let y = 0; y < height; y++) {
    const row = Math.min(rows - 1, Math.floor((y * rows) / height));
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const cell = row * cols + Math.min(cols - 1, Math.floor((x * cols) / width));
      sums[cell]! += 0.299 * rgb[i]! + 0.587 * rgb[i + 1]! + 0.114 * rgb[i + 2]!;
      counts[cell]!++;
    }
  }
  return sums.map((s, i) => s / counts[i]!);
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids of this process's live children whose executable name is `name` (from /proc; Linux). */
export async function childProcesses(name: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
    const m = /^\d+ \((.*)\) (\S) (\d+)/s.exec(stat);
    if (m && m[1] === name && m[2] !== 'Z' && Number(m[3]) === process.pid) pids.push(Number(entry));
  }
  return pids;
}

// -------------------------------------------------------------------------------------------------
// Audio fed by ffmpeg (recorder tests)

let audioSsrc = 23_000_000;

/**
 * A customer or teller microphone without a browser: `ffmpeg -re` encodes a sine tone
 * (`frequency` Hz, default 440) to Opus (libopus, 20 ms frames, as browsers send) and sends RTP
 * into a PlainTransport producer on `router` (comedia, like startVideoFeed). Same controls as a
 * VideoFeed.
 */
export async function startAudioFeed(router: ms.Router, opts: { frequency?: number; send?: boolean } = {}): Promise<VideoFeed> {
  const payloadType = 100;
  const transport = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: false, comedia: true });
  const ssrc = audioSsrc++;
  const producer = await transport.produce({
    kind: 'audio',
    rtpParameters: {
      codecs: [{ mimeType: 'audio/opus', payloadType, clockRate: 48000, channels: 2, parameters: { minptime: 10, useinbandfec: 1 } }],
      encodings: [{ ssrc }],
    },
  });
  const src = await findFreeUdpPortPair('127.0.0.1');
  const args = [
    '-hide_banner', '-nostdin', '-loglevel', 'error',
    '-re', '-f', 'lavfi', '-i', `sine=frequency=${opts.frequency ?? 440}:sample_rate=48000`,
    '-c:a', 'libopus', '-b:a', '32k', '-frame_duration', '20', '-application', 'voip',
    '-vn', '-f', 'rtp', '-payload_type', String(payloadType), '-ssrc', String(ssrc),
    `rtp://127.0.0.1:${transport.tuple.localPort}?pkt_size=1200&rtcpport=${transport.rtcpTuple!.localPort}&localrtpport=${src.rtpPort}&localrtcpport=${src.rtcpPort}`,
  ];
  return ffmpegFeed(transport, producer, args, opts.send !== false);
}

/** ffprobe's JSON about a media file (format and streams, or packets with `-show_entries`). */
export async function ffprobeJson(file: string, args: string[] = ['-show_format', '-show_streams']): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const child = spawn('ffprobe', ['-v', 'error', '-of', 'json', ...args, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err = (err + b.toString('utf8')).slice(-2000)));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(JSON.parse(Buffer.concat(out).toString('utf8')) as Record<string, any>) : reject(new Error(`ffprobe exited with ${code}: ${err}`))));
  });
}

/**
 * A Producer fed by an ffmpeg RTP sender that tests can start, stop, freeze (SIGSTOP) and resume;
 * `close()` also closes the transport.
 */
function ffmpegFeed(transport: VideoFeed['transport'], producer: VideoFeed['producer'], args: string[], send: boolean): VideoFeed {
  let sender: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    const child = sender;
    sender = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
  };
  const feed: VideoFeed = {
    transport,
    producer,
    start() {
      if (sender) return;
      sender = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      sender.stderr!.resume(); // drained, not read
    },
    stop,
    freeze() {
      sender?.kill('SIGSTOP');
    },
    resume() {
      sender?.kill('SIGCONT');
    },
    async close() {
      sender?.kill('SIGCONT'); // a frozen sender would not act on SIGTERM
      await stop();
      transport.close();
    },
    get senderPid() {
      return sender?.pid;
    },
  };
  if (send) feed.start();
  return feed;
}

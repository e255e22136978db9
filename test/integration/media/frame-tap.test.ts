/**
 * The server-side frame tap with real mediasoup and real ffmpeg, no mocks: an ffmpeg "camera"
 * encodes a face photo to VP8 and sends RTP into a PlainTransport producer on a call's router
 * (as rtp-flow.test.ts does with Node), the tap consumes it on a PlainTransport of its own, a
 * second ffmpeg decodes it, and the test looks at the frames. Counts are asserted loosely: the
 * machine is shared, and only gross errors (no frames, every frame, the wrong picture) matter.
 */
import '../../../media/worker-bin.ts';
import dgram from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CallMedia } from '../../../media/call-media.ts';
import { FrameAssembler, FrameTap, FrameTapError, type FrameTapClosedEvent, type FrameTapOptions, type TapFrame } from '../../../media/frame-tap.ts';
import { buildRecvSdp } from '../../../media/sdp.ts';
import { findFreeUdpPortPair } from '../../../media/udp-ports.ts';
import type { MediaWorkerPool } from '../../../media/worker-pool.ts';
import {
  captureLogger,
  childProcesses,
  lumaGrid,
  meanRgb,
  preparePicture,
  processAlive,
  startPool,
  startVideoFeed,
  waitFlowing,
  type LogLine,
  type VideoFeed,
} from './fixtures.ts';

const W = 640;
const H = 480;
const FRAME_BYTES = W * H * 3;

let pool: MediaWorkerPool;
let picture: Awaited<ReturnType<typeof preparePicture>>;
let seq = 0;

beforeAll(async () => {
  pool = await startPool({ numWorkers: 1, logger: captureLogger('silent').logger });
  picture = await preparePicture(W, H);
});
afterAll(async () => {
  await pool?.close();
  await picture?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Whatever a test started is stopped after it, passed or failed (no stray ffmpeg senders).
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function feedOn(media: CallMedia, opts: Parameters<typeof startVideoFeed>[2] = {}): Promise<VideoFeed> {
  const feed = await startVideoFeed(media.router, picture.path, opts);
  cleanups.push(() => feed.close());
  return feed;
}

async function startTap(opts: FrameTapOptions): Promise<FrameTap> {
  const tap = await FrameTap.start(opts);
  cleanups.push(() => tap.close());
  return tap;
}

/** A call with the ffmpeg camera feeding a producer on its router, and a log capture. */
async function setup(feedOpts: Parameters<typeof startVideoFeed>[2] = {}) {
  const n = ++seq;
  const log = captureLogger('debug');
  const media = await CallMedia.create(pool, { callId: `tap-call-${n}`, sessionId: `tap-session-${n}`, logger: captureLogger('silent').logger });
  cleanups.push(() => media.close());
  const feed = await feedOn(media, feedOpts);
  if (feedOpts.send !== false) await waitFlowing(feed);
  const base: FrameTapOptions = { router: media.router, producer: feed.producer, sessionId: media.sessionId, callId: media.callId, logger: log.logger };
  return { media, feed, log, base };
}

function collect(tap: FrameTap): TapFrame[] {
  const frames: TapFrame[] = [];
  tap.on('frame', (f) => frames.push(f));
  return frames;
}

async function transportIds(media: CallMedia): Promise<string[]> {
  return (await media.router.dump()).transportIds;
}

/** Every line the tap logged names its session and call. */
function expectTapLinesTagged(lines: LogLine[], sessionId: string, callId: string): void {
  const tapLines = lines.filter((l) => l['component'] === 'frame-tap');
  expect(tapLines.length).toBeGreaterThan(0);
  for (const l of tapLines) expect(l).toMatchObject({ sessionId, callId });
}

async function portFree(port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => {
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

describe('FrameAssembler', () => {
  it('cuts a byte stream into exact frames whatever the read boundaries, reusing dropped buffers', () => {
    const size = 7;
    const out: number[][] = [];
    const seen = new Set<Uint8Array>();
    let keep = true;
    const asm = new FrameAssembler(size, (f) => {
      out.push([...f]);
      seen.add(f);
      keep = !keep; // keep every other frame
      return !keep;
    });
    const stream = Uint8Array.from({ length: size * 5 + 3 }, (_, i) => i);
    let at = 0;
    for (const len of [1, 9, 2, 13, 0, 6, 100]) {
      asm.push(stream.subarray(at, at + len));
      at = Math.min(stream.length, at + len);
    }
    const expected = Array.from({ length: 5 }, (_, k) => Array.from({ length: size }, (_, j) => k * size + j));
    expect(out).toEqual(expected);
    expect(asm.pending).toBe(3);
    expect(seen.size).toBeLessThan(5); // dropped frames' buffers were reused
  });
});

describe('buildRecvSdp', () => {
  it('describes one loopback video stream with the consumer payload type', () => {
    const vp8 = buildRecvSdp({ rtpPort: 40002, codec: { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 } });
    expect(vp8).toContain('c=IN IP4 127.0.0.1\r\n');
    expect(vp8).toContain('m=video 40002 RTP/AVP 101\r\n');
    expect(vp8).toContain('a=rtpmap:101 VP8/90000\r\n');
    const h264 = buildRecvSdp({ rtpPort: 40004, codec: { mimeType: 'video/H264', payloadType: 107, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } } });
    expect(h264).toContain('a=fmtp:107 packetization-mode=1;profile-level-id=42e01f\r\n');
    expect(() => buildRecvSdp({ rtpPort: 40006, codec: { mimeType: 'audio/opus', payloadType: 100, clockRate: 48000 } })).toThrow(TypeError);
  });
});

describe('frame tap (real mediasoup, real ffmpeg)', () => {
  it('emits exact-size frames of the picture at about the configured rate; setRate changes it; close leaves nothing', async () => {
    const { media, feed, log, base } = await setup();
    const closed: FrameTapClosedEvent[] = [];
    const tap = await startTap(base);
    tap.on('closed', (e) => closed.push(e));
    const frames = collect(tap);
    const ep = tap.endpoint!;
    expect(ep).toBeDefined();
    expect(processAlive(ep.pid)).toBe(true);
    expect(await transportIds(media)).toContain(ep.transportId);

    await expect.poll(() => frames.length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(0);

    // 2 frames/s (the default) for 3 s
    let mark = frames.length;
    await sleep(3000);
    const atTwo = frames.length - mark;
    expect(atTwo).toBeGreaterThanOrEqual(2);
    expect(atTwo).toBeLessThanOrEqual(12);

    // 8 frames/s for 3 s: clearly more, no restart needed
    tap.setRate(8);
    expect(tap.rate).toBe(8);
    mark = frames.length;
    await sleep(3000);
    const atEight = frames.length - mark;
    expect(atEight).toBeGreaterThanOrEqual(10);
    expect(atEight).toBeLessThanOrEqual(40);
    expect(atEight).toBeGreaterThan(atTwo * 1.8);
    expect(tap.pid).toBe(ep.pid);
    expect(() => tap.setRate(0)).toThrow(FrameTapError);
    expect(() => tap.setRate(tap.maxFps + 1)).toThrow(FrameTapError);

    for (const f of frames) {
      expect(f.rgb).toBeInstanceOf(Uint8Array);
      expect(f.rgb.length).toBe(FRAME_BYTES);
      expect([f.width, f.height]).toEqual([W, H]);
    }
    for (let i = 1; i < frames.length; i++) expect(frames[i]!.ts).toBeGreaterThanOrEqual(frames[i - 1]!.ts);
    expect(new Set(frames.map((f) => f.rgb)).size).toBe(frames.length); // every frame has its own buffer

    // The content is the photo: mean colour and a coarse 8×6 luma map match the source.
    const last = frames[frames.length - 1]!.rgb;
    const [r, g, b] = meanRgb(last);
    const [r0, g0, b0] = meanRgb(picture.rgb);
    expect(Math.abs(r - r0)).toBeLessThan(8);
    expect(Math.abs(g - g0)).toBeLessThan(8);
    expect(Math.abs(b - b0)).toBeLessThan(8);
    const grid = lumaGrid(last, W, H);
    const grid0 = lumaGrid(picture.rgb, W, H);
    const meanAbs = grid.reduce((s, v, i) => s + Math.abs(v - grid0[i]!), 0) / grid.length;
    expect(meanAbs).toBeLessThan(6);
    expect(Math.max(...grid0) - Math.min(...grid0)).toBeGreaterThan(40); // the map is not flat, so the comparison means something

    const stats = tap.stats();
    expect(stats).toMatchObject({ framesEmitted: frames.length, restarts: 0, fps: 8, pid: ep.pid, lastFrameAt: frames[frames.length - 1]!.ts });
    expect(stats.framesDropped).toBeGreaterThan(0); // ffmpeg delivers up to maxFps, the gate dropped the surplus at 2 frames/s
    expect(stats.keyFrameRequests).toBeGreaterThanOrEqual(1);
    const producerStats = await feed.producer.getStats();
    expect((producerStats[0]?.pliCount ?? 0) + (producerStats[0]?.firCount ?? 0)).toBeGreaterThanOrEqual(1); // reached the sender as RTCP

    await tap.close();
    await tap.close(); // idempotent
    expect(closed).toEqual([{ reason: 'closed' }]);
    expect(tap.closed).toBe(true);
    expect(tap.pid).toBeUndefined();
    expect(processAlive(ep.pid)).toBe(false);
    const ids = await transportIds(media);
    expect(ids).not.toContain(ep.transportId);
    expect(ids).toEqual([feed.transport.id]);
    for (const port of [ep.rtpPort, ep.rtcpPort, ep.transportPort]) await expect.poll(() => portFree(port), { timeout: 3000 }).toBe(true);
    const after = frames.length;
    await sleep(300);
    expect(frames.length).toBe(after);
    expectTapLinesTagged(log.lines, media.sessionId, media.callId);
  });

  it('asks for key frames until the first frame, and again after a gap', async () => {
    const { media, feed, log, base } = await setup({ send: false });
    const tap = await startTap({ ...base, keyFrameRetryMs: 300, frameGapMs: 1200 });
    const frames = collect(tap);

    // Nothing is sent yet: the tap keeps asking.
    await sleep(1500);
    expect(frames).toHaveLength(0);
    const waiting = tap.stats().keyFrameRequests;
    expect(waiting).toBeGreaterThanOrEqual(3);

    feed.start();
    await expect.poll(() => frames.length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(0);
    // Frames flow: no more requests.
    const flowing = tap.stats().keyFrameRequests;
    await sleep(1500);
    expect(tap.stats().keyFrameRequests - flowing).toBeLessThanOrEqual(1);

    // The network stalls (the sender freezes): after frameGapMs the tap asks again, and the
    // requests reach the sender as PLIs.
    feed.freeze();
    const beforeGap = tap.stats().keyFrameRequests;
    const pliBefore = (await feed.producer.getStats())[0]?.pliCount ?? 0;
    await sleep(2500);
    expect(tap.stats().keyFrameRequests - beforeGap).toBeGreaterThanOrEqual(2);
    expect((await feed.producer.getStats())[0]?.pliCount ?? 0).toBeGreaterThan(pliBefore);

    // The stream continues: frames resume from the same ffmpeg.
    const pid = tap.pid;
    const mark = frames.length;
    feed.resume();
    await expect.poll(() => frames.length - mark, { timeout: 15_000, interval: 100 }).toBeGreaterThan(1);
    expect(tap.pid).toBe(pid);
    expect(tap.stats().restarts).toBe(0);
    const why = log.lines.filter((l) => l.msg === 'frame tap: requesting a key frame').map((l) => l['why']);
    expect(why).toEqual(expect.arrayContaining(['start', 'no_frame_yet', 'gap']));
    expect(log.lines.some((l) => l.msg === 'frame tap: frames resumed after a gap')).toBe(true);
  });

  it('restarts ffmpeg killed mid-stream with a new pipeline, and frames resume', async () => {
    const { media, feed, log, base } = await setup();
    const tap = await startTap({ ...base, restartBackoffMs: [100] });
    const frames = collect(tap);
    const restarts: unknown[] = [];
    tap.on('restart', (e) => restarts.push(e));
    await expect.poll(() => frames.length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(1);
    const first = tap.endpoint!;

    process.kill(first.pid, 'SIGKILL');
    await expect.poll(() => restarts.length, { timeout: 5000 }).toBe(1);
    const mark = frames.length;
    await expect.poll(() => frames.length - mark, { timeout: 20_000, interval: 100 }).toBeGreaterThanOrEqual(3);

    const second = tap.endpoint!;
    expect(second.pid).not.toBe(first.pid);
    expect(processAlive(first.pid)).toBe(false);
    expect(second.transportId).not.toBe(first.transportId);
    expect(await transportIds(media)).toEqual(expect.arrayContaining([feed.transport.id, second.transportId]));
    expect(await transportIds(media)).toHaveLength(2); // the dead pipeline's transport is gone
    expect(tap.stats().restarts).toBe(1);
    for (const f of frames.slice(mark)) expect(f.rgb.length).toBe(FRAME_BYTES);

    const exitLine = log.lines.find((l) => String(l.msg).startsWith('ffmpeg exited unexpectedly'));
    expect(exitLine).toMatchObject({ level: 40, signal: 'SIGKILL', pid: first.pid, sessionId: media.sessionId, callId: media.callId });
    expect(log.lines.some((l) => l.msg === 'frame tap restarting')).toBe(true);
    expectTapLinesTagged(log.lines, media.sessionId, media.callId);

    await tap.close();
    expect(processAlive(second.pid)).toBe(false);
    expect(await transportIds(media)).toEqual([feed.transport.id]);
  });

  it('replaces an ffmpeg that decodes nothing although RTP arrives (stalled)', async () => {
    const { media, feed, log, base } = await setup();
    const tap = await startTap({ ...base, keyFrameRetryMs: 300, frameGapMs: 1000, stallRestartMs: 2500, killTimeoutMs: 500, restartBackoffMs: [100] });
    const frames = collect(tap);
    await expect.poll(() => frames.length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(0);
    const first = tap.endpoint!;

    process.kill(first.pid, 'SIGSTOP'); // alive, holding its ports, decoding nothing
    await expect.poll(() => tap.stats().restarts, { timeout: 10_000, interval: 100 }).toBe(1);
    const mark = frames.length;
    await expect.poll(() => frames.length - mark, { timeout: 15_000, interval: 100 }).toBeGreaterThanOrEqual(2);
    await expect.poll(() => processAlive(first.pid), { timeout: 3000 }).toBe(false);
    expect(tap.endpoint!.pid).not.toBe(first.pid);
    expect(log.lines.find((l) => l.msg === 'ffmpeg decodes nothing although RTP arrives: replacing it')).toMatchObject({ level: 40, pid: first.pid });
    expect(await transportIds(media)).toHaveLength(2);
    expect(feed.producer.closed).toBe(false);
  });

  it('closes itself when the producer closes, and when the call ends', async () => {
    const { media, feed, base } = await setup();
    const a = await startTap(base);
    const b = await startTap({ ...base, width: 320, height: 240 });
    const closedA: FrameTapClosedEvent[] = [];
    const closedB: FrameTapClosedEvent[] = [];
    a.on('closed', (e) => closedA.push(e));
    b.on('closed', (e) => closedB.push(e));
    const pidA = a.pid!;
    const pidB = b.pid!;

    feed.producer.close();
    await expect.poll(() => closedA, { timeout: 5000 }).toEqual([{ reason: 'producer_closed' }]);
    await expect.poll(() => closedB).toEqual([{ reason: 'producer_closed' }]);
    await a.close();
    await b.close();
    expect(processAlive(pidA)).toBe(false);
    expect(processAlive(pidB)).toBe(false);
    expect(await transportIds(media)).toEqual([feed.transport.id]);
    await feed.close();

    // A new camera on the same call; then the call's media closes (router closed).
    const feed2 = await feedOn(media);
    await waitFlowing(feed2);
    const c = await startTap({ ...base, producer: feed2.producer });
    const closedC: FrameTapClosedEvent[] = [];
    c.on('closed', (e) => closedC.push(e));
    const pidC = c.pid!;
    media.close();
    await expect.poll(() => closedC, { timeout: 5000 }).toEqual([{ reason: 'router_closed' }]);
    await c.close();
    expect(processAlive(pidC)).toBe(false);
    await feed2.close();
    for (const w of pool.stats()) expect(w).toMatchObject({ routers: 0, transports: 0 });
  });

  it('decodes H.264 (constrained baseline, packetization mode 1) as phones without VP8 send it', async () => {
    const { media, base } = await setup({ codec: 'h264' });
    const tap = await startTap({ ...base, fps: 4 });
    const frames = collect(tap);
    await expect.poll(() => frames.length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(1);
    const f = frames[frames.length - 1]!;
    expect(f.rgb.length).toBe(FRAME_BYTES);
    const [r, g, b] = meanRgb(f.rgb);
    const [r0, g0, b0] = meanRgb(picture.rgb);
    expect(Math.max(Math.abs(r - r0), Math.abs(g - g0), Math.abs(b - b0))).toBeLessThan(8);
    expect(await transportIds(media)).toHaveLength(2);
  });

  it('scales to fit and pads with black to keep the aspect ratio', async () => {
    const { media, feed, base } = await setup();
    // 640×480 (4:3) into 320×320: the picture becomes 320×240 with 40 black rows above and below.
    const tap = await startTap({ ...base, width: 320, height: 320, fps: 4 });
    const frames = collect(tap);
    await expect.poll(() => frames.length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(1);
    const f = frames[frames.length - 1]!;
    expect([f.width, f.height, f.rgb.length]).toEqual([320, 320, 320 * 320 * 3]);
    const rows = (y0: number, y1: number) => f.rgb.subarray(y0 * 320 * 3, y1 * 320 * 3);
    expect(Math.max(...meanRgb(rows(0, 38)))).toBeLessThan(3);
    expect(Math.max(...meanRgb(rows(282, 320)))).toBeLessThan(3);
    const picMean = meanRgb(picture.rgb);
    const midMean = meanRgb(rows(40, 280));
    for (let i = 0; i < 3; i++) expect(Math.abs(midMean[i]! - picMean[i]!)).toBeLessThan(8);
  });

  it('gives up with a typed error when ffmpeg cannot run or keeps failing, leaving nothing behind', async () => {
    const { media, feed, log, base } = await setup();
    await expect(FrameTap.start({ ...base, ffmpegPath: '/nonexistent/ffmpeg' })).rejects.toMatchObject({ name: 'FrameTapError', code: 'ffmpeg_missing' });
    expect(await transportIds(media)).toEqual([feed.transport.id]);

    // `false` exits at once: every attempt fails; 2 restarts, then it gives up.
    await expect(FrameTap.start({ ...base, ffmpegPath: 'false', maxRestarts: 2, restartBackoffMs: [20] })).rejects.toMatchObject({ code: 'ffmpeg_failed' });
    expect(await transportIds(media)).toEqual([feed.transport.id]);
    expect(log.lines.filter((l) => l.msg === 'frame tap restarting')).toHaveLength(2);
    expect(log.lines.some((l) => l.msg === 'frame tap gave up' && l.level === 50)).toBe(true);

    await expect(FrameTap.start({ ...base, fps: 0 })).rejects.toMatchObject({ code: 'bad_option' });
    await expect(FrameTap.start({ ...base, width: 641 })).rejects.toMatchObject({ code: 'bad_option' });
    await expect(FrameTap.forCall(media, { logger: log.logger })).rejects.toMatchObject({ code: 'no_producer' });
  });

  it('picks loopback port pairs that are free', async () => {
    const pair = await findFreeUdpPortPair();
    expect(pair.rtcpPort).toBe(pair.rtpPort + 1);
    expect(await portFree(pair.rtpPort)).toBe(true);
    expect(await portFree(pair.rtcpPort)).toBe(true);
  });

  it('leaves no ffmpeg child process behind', async () => {
    expect(await childProcesses('ffmpeg')).toEqual([]);
  });
});

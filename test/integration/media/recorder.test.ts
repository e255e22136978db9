/**
 * The call recorder with real mediasoup and real ffmpeg, no mocks: ffmpeg "participants" send a
 * face photo as VP8 and a sine tone as Opus into producers on a call's router, the recorder
 * records them, and the test looks at the stored file with ffprobe and ffmpeg. Times are asserted
 * loosely (the machine is shared): the ffmpeg senders ignore key frame requests, so a video
 * segment starts at the sender's next key frame (within 1 s, gop 10 at 10 frames/s).
 */
import '../../../media/worker-bin.ts';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { types as ms } from 'mediasoup';
import { CallMedia, type Participant } from '../../../media/call-media.ts';
import { buildRecorderSdp, CallRecorder, rtcpBye, type CallRecorderOptions, type RecorderClosedEvent, type RecorderRestartEvent, type RecordingResult } from '../../../media/recorder.ts';
import type { MediaWorkerPool } from '../../../media/worker-pool.ts';
import { BlobStore } from '../../../src/identity/blobs.ts';
import {
  captureLogger,
  childProcesses,
  clientDtlsParameters,
  ffprobeJson,
  opusParameters,
  preparePicture,
  processAlive,
  startAudioFeed,
  startPool,
  startVideoFeed,
  vp8Parameters,
  waitFlowing,
  type LogLine,
  type VideoFeed,
} from './fixtures.ts';

let pool: MediaWorkerPool;
let picture: Awaited<ReturnType<typeof preparePicture>>;
let seq = 0;

beforeAll(async () => {
  pool = await startPool({ numWorkers: 1, logger: captureLogger('silent').logger });
  picture = await preparePicture(640, 480);
});
afterAll(async () => {
  await pool?.close();
  await picture?.cleanup();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** A call, a data dir with its BlobStore, and a log capture. */
async function setup() {
  const n = ++seq;
  const log = captureLogger('debug');
  const media = await CallMedia.create(pool, { callId: `rec-call-${n}`, sessionId: `rec-session-${n}`, logger: captureLogger('silent').logger });
  cleanups.push(() => media.close());
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'recorder-test-'));
  cleanups.push(() => fs.rm(dataDir, { recursive: true, force: true }));
  const blobs = new BlobStore(dataDir);
  const dir = path.join(dataDir, 'calls', media.callId);
  const base = { router: media.router, sessionId: media.sessionId, callId: media.callId, dir, blobs, logger: log.logger } satisfies Partial<CallRecorderOptions>;
  return { media, log, dataDir, blobs, dir, base };
}

async function video(media: CallMedia, opts: Parameters<typeof startVideoFeed>[2] = {}): Promise<VideoFeed> {
  const feed = await startVideoFeed(media.router, picture.path, opts);
  cleanups.push(() => feed.close());
  return feed;
}

async function audio(media: CallMedia, frequency = 440): Promise<VideoFeed> {
  const feed = await startAudioFeed(media.router, { frequency });
  cleanups.push(() => feed.close());
  return feed;
}

async function startRecorder(opts: CallRecorderOptions): Promise<CallRecorder> {
  const rec = await CallRecorder.start(opts);
  cleanups.push(() => rec.stop().then(() => undefined, () => undefined));
  return rec;
}

function collectClosed(rec: CallRecorder): RecorderClosedEvent[] {
  const events: RecorderClosedEvent[] = [];
  rec.on('closed', (e) => events.push(e));
  return events;
}

async function transportIds(media: CallMedia): Promise<string[]> {
  return (await media.router.dump()).transportIds;
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

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Exit code of an ffmpeg run (stderr drained). */
function ffmpegExit(args: string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.resume();
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
}

/** Mean volume (dB) of each audio stream of the file (one ffmpeg run). */
function meanVolumes(file: string, streams: number): Promise<number[]> {
  const graph = Array.from({ length: streams }, (_, i) => `[0:a:${i}]volumedetect[a${i}]`).join(';');
  const outputs = Array.from({ length: streams }, (_, i) => ['-map', `[a${i}]`, '-f', 'null', '-']).flat();
  return new Promise((resolve, reject) => {
    const child = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-i', file, '-filter_complex', graph, ...outputs], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString('utf8')));
    child.once('error', reject);
    child.once('close', () => {
      const found = [...err.matchAll(/Parsed_volumedetect_(\d+) @ \S+\] mean_volume: (-?[\d.]+) dB/g)].map((m) => [Number(m[1]), Number(m[2])] as const);
      if (found.length !== streams) reject(new Error(`no volume: ${err.slice(-500)}`));
      else resolve(found.sort((a, b) => a[0] - b[0]).map(([, v]) => v));
    });
  });
}

/** Presentation times (s) and key frame flags of every stream's packets (one ffprobe run). */
async function packetsByStream(file: string): Promise<Map<number, Array<{ t: number; key: boolean }>>> {
  const j = await ffprobeJson(file, ['-show_entries', 'packet=stream_index,pts_time,flags']);
  const out = new Map<number, Array<{ t: number; key: boolean }>>();
  for (const p of j['packets'] as Array<{ stream_index: number; pts_time: string; flags: string }>) {
    if (!out.has(p.stream_index)) out.set(p.stream_index, []);
    out.get(p.stream_index)!.push({ t: Number(p.pts_time), key: p.flags.startsWith('K') });
  }
  for (const list of out.values()) list.sort((a, b) => a.t - b.t);
  return out;
}

/** What every recording must be: WebM, the expected streams in order, titled, playable from a key frame, stored under its hash. */
async function expectRecording(result: RecordingResult, blobs: BlobStore, expected: Array<[Participant, 'audio' | 'video']>, recordedMs: number, decodeAll = false) {
  expect(result.container).toBe('webm');
  expect(result.mimeType).toBe('video/webm');
  expect(result.path).toBe(blobs.pathFor(result.sha256));
  const file = result.path;
  // Stored under its SHA-256, with its size, readable only by us.
  expect(await sha256File(file)).toBe(result.sha256);
  const st = await fs.stat(file);
  expect(st.size).toBe(result.bytes);
  expect(st.mode & 0o777).toBe(0o600);
  expect(await blobs.has(result.sha256)).toBe(true);
  // EBML header with DocType "webm" (what Chromium's demuxer checks), not just "matroska".
  const head = Buffer.alloc(64);
  const h = await fs.open(file, 'r');
  await h.read(head, 0, 64, 0);
  await h.close();
  expect(head.readUInt32BE(0)).toBe(0x1a45dfa3);
  expect(head.indexOf('webm')).toBeGreaterThan(0);

  const probe = await ffprobeJson(file);
  expect(probe['format'].format_name).toContain('webm');
  const streams = probe['streams'] as Array<{ codec_type: string; codec_name: string; tags?: { title?: string }; disposition: { default: number } }>;
  expect(streams.map((s) => [s.codec_type, s.codec_name, s.tags?.title])).toEqual(expected.map(([p, k]) => [k, k === 'video' ? 'vp8' : 'opus', `${p} ${k}`]));
  expect(result.tracks.map((t) => [t.participant, t.kind, t.codec])).toEqual(expected.map(([p, k]) => [p, k, k === 'video' ? 'vp8' : 'opus']));
  // The container's duration is right: the file's own, and within 1.5 s of the time recorded.
  const duration = Number(probe['format'].duration) * 1000;
  expect(Math.abs(duration - result.durationMs)).toBeLessThan(2);
  expect(Math.abs(result.durationMs - recordedMs)).toBeLessThan(1500);
  expect(result.endedAt - result.startedAt).toBeGreaterThan(0);
  // Every video stream starts at a key frame, and its first frame decodes (all in one ffmpeg run).
  const byStream = await packetsByStream(file);
  const videos = expected.flatMap(([, kind], i) => (kind === 'video' ? [i] : []));
  for (const i of videos) {
    const p = byStream.get(i) ?? [];
    expect(p.length).toBeGreaterThan(5);
    expect(p[0]!.key).toBe(true);
  }
  expect(await ffmpegExit(['-i', file, ...videos.flatMap((_, v) => ['-map', `0:v:${v}`, '-frames:v', '1', '-f', 'null', '-'])])).toBe(0);
  if (decodeAll) expect(await ffmpegExit(['-i', file, '-f', 'null', '-'])).toBe(0); // the whole file decodes
  return { file, probe, byStream };
}

/** After the recorder: its ffmpeg processes gone, its transports gone from the router, its loopback ports free, its work dir gone. */
async function expectNothingLeft(media: CallMedia, feeds: VideoFeed[], endpoints: CallRecorder['endpoints'], dir: string) {
  expect(endpoints.length).toBeGreaterThan(0);
  for (const ep of endpoints) expect(processAlive(ep.pid)).toBe(false);
  if (!media.router.closed) expect((await transportIds(media)).sort()).toEqual(feeds.filter((f) => !f.transport.closed).map((f) => f.transport.id).sort());
  for (const ep of endpoints) for (const port of [ep.rtpPort, ep.rtcpPort, ep.transportPort]) await expect.poll(() => portFree(port), { timeout: 3000 }).toBe(true);
  await expect(fs.stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
}

function expectLinesTagged(lines: LogLine[], sessionId: string, callId: string): void {
  const ours = lines.filter((l) => l['component'] === 'recorder');
  expect(ours.length).toBeGreaterThan(0);
  for (const l of ours) expect(l).toMatchObject({ sessionId, callId });
}

describe('recorder helpers', () => {
  it('describes an Opus stream (and video as the frame tap does), and builds an RTCP BYE ffmpeg accepts', () => {
    const opus = buildRecorderSdp({ rtpPort: 40010, codec: { mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 } });
    expect(opus).toContain('m=audio 40010 RTP/AVP 100\r\n');
    expect(opus).toContain('a=rtpmap:100 opus/48000/2\r\n');
    expect(buildRecorderSdp({ rtpPort: 40012, codec: { mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 } })).toContain('a=rtpmap:101 VP8/90000\r\n');
    const bye = rtcpBye(0xdeadbeef);
    expect(bye.length).toBeGreaterThanOrEqual(12); // ffmpeg ignores shorter RTCP
    expect([bye[1], bye[9], bye.readUInt32BE(12)]).toEqual([201, 203, 0xdeadbeef]);
  });
});

describe('call recorder (real mediasoup, real ffmpeg)', () => {
  it('records two participants, audio and video, into one WebM stored by its hash; nothing is left behind', async () => {
    const { media, log, blobs, dir, base } = await setup();
    const feeds = await Promise.all([video(media), audio(media, 440), video(media), audio(media, 660)]);
    await Promise.all(feeds.map((f) => waitFlowing(f)));
    const [cv, ca, tv, ta] = feeds.map((f) => f.producer) as [ms.Producer, ms.Producer, ms.Producer, ms.Producer];
    const startedAt = Date.now();
    const rec = await startRecorder({
      ...base,
      producers: [
        { participant: 'teller', producer: ta },
        { participant: 'customer', producer: cv },
        { participant: 'teller', producer: tv },
        { participant: 'customer', producer: ca },
      ],
    });
    const closed = collectClosed(rec);
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(4);
    const endpoints = rec.endpoints;
    expect(endpoints).toHaveLength(4);
    expect(new Set(endpoints.map((e) => e.pid)).size).toBe(4); // one ffmpeg per stream
    for (const ep of endpoints) expect(processAlive(ep.pid)).toBe(true);
    expect(await transportIds(media)).toEqual(expect.arrayContaining(endpoints.map((e) => e.transportId)));
    // The segments are written while recording, readable by us only.
    for (const ep of endpoints) expect((await fs.stat(ep.file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o700);
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ version: 1, sessionId: media.sessionId, callId: media.callId });
    expect(manifest.segments).toHaveLength(4);

    await sleep(Math.max(0, 4000 - (Date.now() - startedAt)));
    const stopAt = Date.now();
    const result = await rec.stop();
    const stopMs = Date.now() - stopAt;

    // Time 0 is the first packet: audio at once, video at the senders' next key frame.
    const { file } = await expectRecording(result, blobs, [['customer', 'video'], ['customer', 'audio'], ['teller', 'video'], ['teller', 'audio']], stopAt - startedAt, true);
    expect(result.startedAt).toBeGreaterThanOrEqual(startedAt);
    expect(result.endedAt).toBeGreaterThanOrEqual(stopAt);
    expect(Math.min(...result.tracks.map((t) => t.startMs))).toBe(0);
    for (const t of result.tracks) expect(t.startMs).toBeLessThan(3000); // the next key frame (1 s), plus the senders' lag on a busy machine
    expect(result.segments.map((s) => s.end)).toEqual(['stopped', 'stopped', 'stopped', 'stopped']);
    expect(result.restarts).toBe(0);
    // The tones are there (a sine at -20 dB or so, not silence).
    for (const v of await meanVolumes(file, 2)) expect(v).toBeGreaterThan(-35);

    // The key frame requests reached the video senders as RTCP (PLI/FIR).
    for (const f of [feeds[0]!, feeds[2]!]) {
      const st = (await f.producer.getStats())[0];
      expect((st?.pliCount ?? 0) + (st?.firCount ?? 0)).toBeGreaterThanOrEqual(1);
    }
    expect(await blobs.get(result.sha256)).toHaveLength(result.bytes);
    expect(closed).toEqual([{ reason: 'stopped', result }]);
    expect(rec.closed).toBe(true);
    await expectNothingLeft(media, feeds, endpoints, dir);
    expect(await rec.stop()).toBe(result);
    expectLinesTagged(log.lines, media.sessionId, media.callId);
    expect(log.lines.filter((l) => l.level >= 40)).toEqual([]);
    console.info(`recording: ${result.bytes} bytes, ${result.durationMs} ms for ${stopAt - startedAt} ms recorded; stop() took ${stopMs} ms; tracks start at ${result.tracks.map((t) => t.startMs).join('/')} ms`);
  });

  it('records a participant who starts late and a camera that reconnects; stop() twice is one stop', async () => {
    const { media, blobs, dir, base } = await setup();
    const [cv1, ca] = await Promise.all([video(media), audio(media, 440)]);
    await Promise.all([waitFlowing(cv1), waitFlowing(ca)]);
    const startedAt = Date.now();
    const rec = await startRecorder({ ...base, producers: [{ participant: 'customer', producer: cv1.producer }, { participant: 'customer', producer: ca.producer }] });
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(2);

    // The teller starts sending a second after the customer's video is recorded.
    await sleep(1000);
    const [tv, ta] = await Promise.all([video(media), audio(media, 660)]);
    rec.addProducer('teller', tv.producer);
    rec.addProducer('teller', ta.producer);
    rec.addProducer('teller', ta.producer); // idempotent
    const endpoints = new Map<number, CallRecorder['endpoints'][number]>();
    const remember = () => rec.endpoints.forEach((e) => endpoints.set(e.pid, e));
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(4);
    remember();

    // The customer's camera drops (its producer closes) and comes back a second later as a new producer.
    await sleep(1000);
    const dropAt = Date.now();
    await cv1.close();
    await expect.poll(() => rec.stats().recording.length, { timeout: 5000, interval: 50 }).toBe(3);
    await sleep(1000);
    const cv2 = await video(media);
    rec.addProducer('customer', cv2.producer);
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(4);
    remember();
    await sleep(1000);

    const stopAt = Date.now();
    const first = rec.stop();
    const second = rec.stop();
    expect(second).toBe(first);
    const result = await first;
    expect(await rec.stop()).toBe(result);

    const { probe, byStream } = await expectRecording(result, blobs, [['customer', 'video'], ['customer', 'audio'], ['teller', 'video'], ['teller', 'audio']], stopAt - startedAt);
    const byKey = Object.fromEntries(result.tracks.map((t) => [`${t.participant}/${t.kind}`, t]));
    expect(byKey['customer/video']!.segments).toBe(2);
    expect(byKey['teller/audio']!.startMs).toBeGreaterThan(1000);
    expect(byKey['teller/video']!.startMs).toBeGreaterThan(1000);
    expect(result.segments.filter((s) => s.participant === 'customer' && s.kind === 'video').map((s) => s.end)).toEqual(['producer_closed', 'stopped']);
    for (const i of [2, 3]) expect(Number(probe['streams'][i].start_time)).toBeGreaterThan(1.0); // the teller's streams start late in the file
    // The customer's video: media before the drop, a gap of about the second it was away, media after.
    const cvPackets = byStream.get(0)!;
    const dropS = (dropAt - result.startedAt) / 1000;
    const gaps = cvPackets.slice(1).map((p, i) => ({ at: cvPackets[i]!.t, gap: p.t - cvPackets[i]!.t, key: p.key }));
    const away = gaps.find((g) => g.gap > 0.8 && g.at < dropS + 0.3 && g.at > dropS - 1.5);
    expect(away).toBeDefined();
    expect(away!.key).toBe(true); // the new segment starts at a key frame
    expect(cvPackets.filter((p) => p.t < away!.at).length).toBeGreaterThan(5);
    await expectNothingLeft(media, [cv1, ca, tv, ta, cv2], [...endpoints.values()], dir);
  });

  it('restarts a crashed ffmpeg, and a stalled one, into new segments; the recording keeps them all', async () => {
    const { media, log, blobs, dir, base } = await setup();
    const [cv, ca] = await Promise.all([video(media), audio(media)]);
    await Promise.all([waitFlowing(cv), waitFlowing(ca)]);
    const startedAt = Date.now();
    const rec = await startRecorder({
      ...base,
      restartBackoffMs: [100],
      stallRestartMs: 2000,
      killTimeoutMs: 500,
      producers: [{ participant: 'customer', producer: cv.producer }, { participant: 'customer', producer: ca.producer }],
    });
    const restarts: RecorderRestartEvent[] = [];
    rec.on('restart', (e) => restarts.push(e));
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(2);
    // Late enough that the first segment holds a closed 1 s cluster (a crash loses the one being written).
    await sleep(2000);

    // 1. ffmpeg dies.
    const before = rec.endpoints;
    const victim = before.find((e) => e.kind === 'video')!;
    const killedAt = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    await expect.poll(() => restarts.length, { timeout: 5000 }).toBe(1);
    expect(restarts[0]).toMatchObject({ participant: 'customer', kind: 'video', failures: 1 });
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(2);
    const after = rec.endpoints;
    const replacement = after.find((e) => e.kind === 'video')!;
    expect(replacement.pid).not.toBe(victim.pid);
    expect(replacement.transportId).not.toBe(victim.transportId);
    expect(after.find((e) => e.kind === 'audio')!.pid).toBe(before.find((e) => e.kind === 'audio')!.pid); // the other stream went on
    expect(await transportIds(media)).not.toContain(victim.transportId);
    // The manifest in the work dir lists the crashed segment and its replacement.
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.segments.filter((x: { kind: string }) => x.kind === 'video').map((x: { end: string | null }) => x.end)).toEqual(['crashed', null]);
    await sleep(1500);

    // 2. ffmpeg hangs: alive, holding its ports, writing nothing.
    process.kill(replacement.pid, 'SIGSTOP');
    await expect.poll(() => restarts.length, { timeout: 15_000, interval: 100 }).toBe(2);
    await expect.poll(() => processAlive(replacement.pid), { timeout: 3000 }).toBe(false);
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(2);
    const third = rec.endpoints.find((e) => e.kind === 'video')!;
    expect(third.pid).not.toBe(replacement.pid);
    await sleep(1000);

    const stopAt = Date.now();
    const result = await rec.stop();
    const { byStream } = await expectRecording(result, blobs, [['customer', 'video'], ['customer', 'audio']], stopAt - startedAt);
    expect(result.restarts).toBe(2);
    expect(result.tracks[0]!.segments).toBe(3);
    expect(result.segments.filter((s) => s.kind === 'video').map((s) => s.end)).toEqual(['crashed', 'stalled', 'stopped']);
    expect(result.segments.filter((s) => s.kind === 'audio').map((s) => s.end)).toEqual(['stopped']);
    // Video from before the crash (all but its last unflushed second at most) and after both failures.
    const p = byStream.get(0)!;
    const crashS = (killedAt - result.startedAt) / 1000;
    expect(p.some((x) => x.t < crashS - 1.2 && x.t > 0)).toBe(true);
    expect(p.some((x) => x.t > crashS + 0.3 && x.t < crashS + 1.5)).toBe(true);
    expect(p[p.length - 1]!.t).toBeGreaterThan((stopAt - result.startedAt) / 1000 - 1.5);
    const exitLine = log.lines.find((l) => String(l.msg).startsWith('ffmpeg exited unexpectedly'));
    expect(exitLine).toMatchObject({ level: 40, signal: 'SIGKILL', pid: victim.pid, participant: 'customer', kind: 'video', sessionId: media.sessionId, callId: media.callId });
    expect(log.lines.find((l) => l.msg === 'ffmpeg writes nothing although RTP arrives: replacing it')).toMatchObject({ level: 40, pid: replacement.pid });
    expect(log.lines.filter((l) => l.msg === 'recorder restarting a stream')).toHaveLength(2);
    await expectNothingLeft(media, [cv, ca], [...before, ...after, third], dir);
  });

  it('ends by itself when the router closes and still yields what was written', async () => {
    const { media, blobs, dir, base } = await setup();
    const [cv, ca] = await Promise.all([video(media), audio(media)]);
    await Promise.all([waitFlowing(cv), waitFlowing(ca)]);
    const startedAt = Date.now();
    const rec = await startRecorder({ ...base, producers: [{ participant: 'customer', producer: cv.producer }, { participant: 'customer', producer: ca.producer }] });
    const closed = collectClosed(rec);
    await expect.poll(() => rec.stats().recording.length, { timeout: 10_000, interval: 100 }).toBe(2);
    const endpoints = rec.endpoints;
    await sleep(Math.max(0, 3000 - (Date.now() - startedAt)));

    const closeAt = Date.now();
    media.close();
    await expect.poll(() => closed.length, { timeout: 15_000, interval: 50 }).toBe(1);
    expect(closed[0]).toMatchObject({ reason: 'router_closed', result: expect.objectContaining({ sha256: expect.any(String) }) });
    const result = closed[0]!.result!;
    expect(await rec.stop()).toBe(result);
    await expectRecording(result, blobs, [['customer', 'video'], ['customer', 'audio']], closeAt - startedAt);
    expect(result.segments.map((s) => s.end)).toEqual(['router_closed', 'router_closed']);
    await expectNothingLeft(media, [cv, ca], endpoints, dir);
    await cv.close();
    await ca.close();
    for (const w of pool.stats()) expect(w).toMatchObject({ routers: 0, transports: 0 });
  });

  it('follows the call media: records the producers it has and those that appear; with no media at all, stop() says empty', async () => {
    const { media, log, dir } = await setup();
    const t: Record<string, string> = {};
    for (const p of ['customer', 'teller'] as const) {
      const opts = await media.createTransport(p, 'send');
      await media.connectTransport(p, opts.id, clientDtlsParameters());
      t[p] = opts.id;
    }
    // No browser here: these WebRTC producers exist, but no packet ever arrives.
    await media.produce('customer', t['customer']!, 'video', vp8Parameters());
    const rec = await startRecorder({ media, dir, blobs: new BlobStore(path.dirname(path.dirname(dir))), logger: log.logger });
    expect(rec.sessionId).toBe(media.sessionId);
    expect(rec.stats().tracks).toBe(1);
    await media.produce('teller', t['teller']!, 'audio', opusParameters());
    await expect.poll(() => rec.endpoints.length, { timeout: 5000, interval: 50 }).toBe(2);
    const endpoints = rec.endpoints;
    expect(endpoints.map((e) => `${e.participant}/${e.kind}`).sort()).toEqual(['customer/video', 'teller/audio']);
    const closed = collectClosed(rec);
    await expect(rec.stop()).rejects.toMatchObject({ name: 'RecorderError', code: 'empty' });
    expect(closed).toEqual([{ reason: 'stopped', error: expect.objectContaining({ code: 'empty' }) }]);
    for (const ep of endpoints) expect(processAlive(ep.pid)).toBe(false);
    expect(await transportIds(media)).toHaveLength(2); // the two send transports only
    await expect(fs.stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    // Key frames were asked for while the video had none.
    expect(rec.stats().keyFrameRequests).toBeGreaterThanOrEqual(1);
  });

  it('refuses to start without ffmpeg, leaving nothing behind', async () => {
    const { media, dir, base } = await setup();
    const ca = await audio(media);
    await waitFlowing(ca);
    await expect(CallRecorder.start({ ...base, ffmpegPath: '/nonexistent/ffmpeg', producers: [{ participant: 'customer', producer: ca.producer }] })).rejects.toMatchObject({
      name: 'RecorderError',
      code: 'ffmpeg_missing',
    });
    expect(await transportIds(media)).toEqual([ca.transport.id]);
    await expect(fs.stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('leaves no ffmpeg child process behind', async () => {
    expect(await childProcesses('ffmpeg')).toEqual([]);
  });
});

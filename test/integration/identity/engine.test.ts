/**
 * The face engine with the real models on the tfjs WASM backend, one worker thread (tests share
 * two cores with other work). Frames are real faces from the face-api demo photos.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError, FaceEngine, type Frame, type FrameOutcome } from '../../../src/identity/engine.ts';
import { ImageError } from '../../../src/identity/image.ts';
import { composeFrame, faceSquare, fixtureFaces, loadSample, samplePath } from '../../fixtures/faces/samples.ts';

let engine: FaceEngine;
const faces = fixtureFaces().faces;
const frames = ['s6f2', 's1f0', 's3f0', 's5f3'].map((id, i) => {
  const f = faces.find((x) => x.id === id)!;
  return composeFrame(faceSquare(loadSample(f.sample), f.box), { seed: i + 1, noise: 3 });
});
const frame = (i: number, ts = i): Frame => {
  const f = frames[i % frames.length]!;
  return { rgb: f.data, width: f.width, height: f.height, ts };
};

beforeAll(async () => {
  engine = await FaceEngine.start({ workers: 1, testHooks: true, maxQueuedJobs: 4, restartDelayMs: 100 });
});
afterAll(async () => {
  await engine?.close();
});

describe('FaceEngine', () => {
  it('runs face-api on the WASM backend with SIMD', () => {
    expect(engine.info).toMatchObject({ backend: 'wasm', simd: true, tfjs: '4.22.0', faceApi: '1.7.15' });
  });

  it('analyses a 640×480 frame: one face, 68 landmarks, a 128-d descriptor', async () => {
    const f = frames[0]!;
    const a = await engine.analyze(f.data, f.width, f.height);
    expect(a).toMatchObject({ width: 640, height: 480, detector: 'tiny' });
    expect(a.faces.length).toBe(1);
    const face = a.faces[0]!;
    expect(face.landmarks68.length).toBe(68);
    expect(face.descriptor).toBeInstanceOf(Float32Array);
    expect(face.descriptor.length).toBe(128);
    const norm = Math.hypot(...face.descriptor);
    expect(norm).toBeGreaterThan(0.5);
    expect(norm).toBeLessThan(2.5);
    expect(face.box.x).toBeGreaterThan(100);
    expect(face.box.x + face.box.width).toBeLessThan(540);
    expect(face.score).toBeGreaterThan(0.5);
    expect(a.stats.thumb.length).toBe(64 * 48);
    expect(a.ms).toBeGreaterThan(0);
    // the caller's buffer is untouched (the engine copies before transferring)
    expect(f.data.byteLength).toBe(640 * 480 * 3);
  });

  it('the SSD detector works on frames too', async () => {
    const f = frames[0]!;
    const a = await engine.analyze(f.data, f.width, f.height, { detector: 'ssd' });
    expect(a.detector).toBe('ssd');
    expect(a.faces.length).toBe(1);
  });

  it('latest frame wins: a waiting frame is dropped when a newer one of the same call arrives', async () => {
    const outcomes = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => engine.submitFrame('call-A', frame(i))));
    expect(outcomes.map((o) => o.status)).toEqual(['analyzed', 'dropped', 'dropped', 'dropped', 'dropped', 'analyzed']);
    expect(outcomes.map((o) => o.ts)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(engine.callStats('call-A')).toEqual({ submitted: 6, analyzed: 2, dropped: 4, failed: 0 });
  });

  it('calls do not drop each other’s frames and are served in turn', async () => {
    const order: string[] = [];
    const track = (call: string, p: Promise<FrameOutcome>) => p.then((o) => (o.status === 'analyzed' && order.push(call), o));
    // B0 runs; C1 waits for C; B2 waits for B. A newer frame of B must not drop C's frame.
    const all = await Promise.all([
      track('B', engine.submitFrame('call-B', frame(0))),
      track('C', engine.submitFrame('call-C', frame(1))),
      track('B', engine.submitFrame('call-B', frame(2))),
    ]);
    expect(all.map((o) => o.status)).toEqual(['analyzed', 'analyzed', 'analyzed']);
    expect(order).toEqual(['B', 'C', 'B']);
  });

  it('releaseCall drops the waiting frame and forgets the call', async () => {
    const first = engine.submitFrame('call-D', frame(0));
    const waiting = engine.submitFrame('call-D', frame(1));
    expect(engine.releaseCall('call-D')).toMatchObject({ submitted: 2, dropped: 1 });
    expect(await waiting).toEqual({ status: 'dropped', ts: 1 });
    expect((await first).status).toBe('analyzed');
    expect(engine.callStats('call-D')).toBeUndefined();
  });

  it('bad frames fail with a typed error, without reaching a worker', async () => {
    const o = await engine.submitFrame('call-E', { rgb: new Uint8Array(100), width: 640, height: 480, ts: 1 });
    expect(o.status).toBe('failed');
    expect(o.status === 'failed' && o.error).toBeInstanceOf(ImageError);
    await expect(engine.analyze(new Uint8Array(12), 2, 3)).rejects.toMatchObject({ name: 'ImageError', code: 'corrupt' });
  });

  it('uploads: type and limits are checked on the event loop, decoding errors come back typed from the worker', async () => {
    await expect(engine.analyzeEncoded(Buffer.from('hello, I am a text file called photo.jpg'))).rejects.toMatchObject({ name: 'ImageError', code: 'unsupported_type' });
    const jpg = fs.readFileSync(samplePath(1));
    const truncated = jpg.subarray(0, jpg.length >> 1); // header intact, data cut
    const err = await engine.analyzeEncoded(truncated).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect(err).toMatchObject({ code: 'corrupt' });
  });

  it('one-off jobs are never dropped, and fail fast when too many wait', async () => {
    const f = frames[0]!;
    const jobs = Array.from({ length: 6 }, () => engine.analyze(f.data, f.width, f.height).then(() => 'ok', (e: EngineError) => e.code));
    // one runs, four wait (maxQueuedJobs: 4), the sixth is refused
    expect(await Promise.all(jobs)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'overloaded']);
  });

  it('survives a worker crash: the worker is replaced and the call goes on', async () => {
    // The worker handles the crash request once its running analysis is done (inference does
    // not yield to the message queue), so usually the running frame succeeds and the next one,
    // posted to the dying worker, fails with worker_crashed; either way the call continues.
    const inFlight = engine.submitFrame('call-F', frame(0, 100));
    engine.crashWorkerForTest(0);
    const first = await inFlight;
    if (first.status === 'failed') expect(first.error).toMatchObject({ name: 'EngineError', code: 'worker_crashed' });
    let next: FrameOutcome | null = null;
    for (let i = 1; i <= 3 && next?.status !== 'analyzed'; i++) {
      next = await engine.submitFrame('call-F', frame(i, 100 + i));
      if (next.status === 'failed') expect(next.error).toMatchObject({ code: 'worker_crashed' });
    }
    expect(next?.status).toBe('analyzed');
    // The replacement is counted when the dead worker's exit is handled, which on a loaded
    // machine can come after the next frame was already analysed by the new worker's predecessor.
    await expect.poll(() => engine.stats().restarts, { timeout: 15_000 }).toBe(1);
    await expect.poll(() => engine.stats().workers, { timeout: 15_000 }).toBe(1);
    // The next test closes the engine with a frame running: let the replacement finish starting.
    await expect.poll(async () => (await engine.submitFrame('call-F', frame(9, 200))).status, { timeout: 30_000 }).toBe('analyzed');
  });

  it('closes gracefully: the running frame finishes, the waiting one is dropped, new work is refused', async () => {
    const running = engine.submitFrame('call-G', frame(0, 1));
    const waiting = engine.submitFrame('call-G', frame(1, 2));
    await engine.close();
    expect((await running).status).toBe('analyzed');
    expect(await waiting).toEqual({ status: 'dropped', ts: 2 });
    const after = await engine.submitFrame('call-G', frame(2, 3));
    expect(after.status === 'failed' && after.error).toMatchObject({ name: 'EngineError', code: 'closed' });
    await expect(engine.analyze(frames[0]!.data, 640, 480)).rejects.toMatchObject({ code: 'closed' });
    await engine.close(); // idempotent
  });
});

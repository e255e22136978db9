/**
 * Matching with the real models on real faces (face-api's demo group photos; faces inside one
 * photo are different people). References go through extractReference like an uploaded ID
 * photo (SSD); live frames are 640×480 with the face transformed as a camera would (TinyFace).
 * The distances are printed: they are part of the measurement behind the default threshold
 * (the full measurement is bench/face-match.ts --only=distances).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PNG } from 'pngjs';
import { FaceEngine } from '../../../src/identity/engine.ts';
import { assessDocumentCapture } from '../../../src/identity/document.ts';
import { ImageError } from '../../../src/identity/image.ts';
import { CallMonitor } from '../../../src/identity/monitor.ts';
import { extractReference, ReferencePhotoError, sha256Hex, type ReferencePhoto } from '../../../src/identity/reference-photo.ts';
import { DEFAULT_MATCH_CONFIG, euclideanDistance } from '../../../src/identity/scoring.ts';
import type { FrameAnalysis } from '../../../src/identity/types.ts';
import type { RgbImage } from '../../../src/identity/image.ts';
import {
  backgroundPatch,
  brightness,
  composeFrame,
  encodeJpeg,
  faceSquare,
  fixtureFaces,
  jpegRoundTrip,
  loadSample,
  rotate,
  samplePath,
} from '../../fixtures/faces/samples.ts';
import fs from 'node:fs';

const THRESHOLD = DEFAULT_MATCH_CONFIG.threshold;
const IDS = ['s1f0', 's1f1', 's1f2', 's6f0', 's6f1', 's6f2', 's6f3'];
const TRANSFORMS: [string, (c: RgbImage, seed: number) => RgbImage][] = [
  ['re-encoded JPEG q30', (c, s) => jpegRoundTrip(composeFrame(c, { seed: s, noise: 3 }), 30)],
  ['rescaled to 200 px', (c, s) => composeFrame(c, { seed: s, noise: 3, side: 200 })],
  ['brightened ×1.35', (c, s) => composeFrame(brightness(c, 1.35), { seed: s, noise: 3 })],
  ['rotated +8°', (c, s) => composeFrame(rotate(c, 8), { seed: s, noise: 3 })],
  ['rotated −8°', (c, s) => composeFrame(rotate(c, -8), { seed: s, noise: 3 })],
];

let engine: FaceEngine;
const crops = new Map<string, RgbImage>();
const refs = new Map<string, ReferencePhoto>();
/** live[id][transform] */
const live = new Map<string, Map<string, FrameAnalysis>>();

beforeAll(async () => {
  engine = await FaceEngine.start({ workers: 1 });
  for (const id of IDS) {
    const f = fixtureFaces().faces.find((x) => x.id === id)!;
    const crop = faceSquare(loadSample(f.sample), f.box);
    crops.set(id, crop);
    refs.set(id, await extractReference(engine, encodeJpeg(crop, 92)));
    const m = new Map<string, FrameAnalysis>();
    for (const [i, [name, make]] of TRANSFORMS.entries()) {
      const fr = make(crop, i + 1);
      m.set(name, await engine.analyze(fr.data, fr.width, fr.height));
    }
    live.set(id, m);
  }
}, 180_000);

afterAll(async () => {
  await engine?.close();
});

const single = (a: FrameAnalysis) => {
  expect(a.faces.length).toBe(1);
  return a.faces[0]!.descriptor;
};

describe('reference photo', () => {
  it('one face: hash of the upload, descriptor, score, box, size', async () => {
    const bytes = encodeJpeg(crops.get('s6f2')!, 92);
    const ref = await extractReference(engine, bytes);
    expect(ref.sha256).toBe(sha256Hex(bytes));
    expect(ref).toMatchObject({ format: 'jpeg', width: crops.get('s6f2')!.width, height: crops.get('s6f2')!.height, model: { detector: 'ssd', faceApi: '1.7.15', tfjs: '4.22.0' } });
    expect(ref.descriptor.length).toBe(128);
    expect(ref.detectionScore).toBeGreaterThan(0.9);
    expect(ref.box.width).toBeGreaterThan(100);
    expect(Math.abs(ref.quality.yaw)).toBeLessThan(15);
  });

  it('a group photo (three people) is refused as multiple_faces', async () => {
    const err = await extractReference(engine, fs.readFileSync(samplePath(1))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReferencePhotoError);
    expect(err).toMatchObject({ code: 'multiple_faces', faceCount: 3 });
  });

  it('a photo of the background and a flat grey PNG are refused as no_face', async () => {
    const bg = await extractReference(engine, encodeJpeg(backgroundPatch(1, { x: 1500, y: 800, width: 400, height: 450 }), 90)).catch((e: unknown) => e);
    expect(bg).toMatchObject({ name: 'ReferencePhotoError', code: 'no_face', faceCount: 0 });
    const flat = new PNG({ width: 300, height: 400 });
    flat.data.fill(128);
    const grey = await extractReference(engine, PNG.sync.write(flat)).catch((e: unknown) => e);
    expect(grey).toMatchObject({ name: 'ReferencePhotoError', code: 'no_face' });
  });

  it('a non-image upload is refused with an ImageError before any analysis', async () => {
    const err = await extractReference(engine, Buffer.from('%PDF-1.7 not a photo')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect(err).toMatchObject({ code: 'unsupported_type' });
  });

  it('a face too small in the photo is refused', async () => {
    const tiny = composeFrame(crops.get('s6f2')!, { side: 90, width: 640, height: 480 });
    const err = await extractReference(engine, encodeJpeg(tiny, 92)).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ReferencePhotoError' });
    expect(['face_too_small', 'no_face']).toContain((err as ReferencePhotoError).code);
  });
});

describe('matching real faces', () => {
  it('the same face matches itself after re-encoding, rescaling, brightening and ±8° rotation', () => {
    const rows: string[] = [];
    const missed: string[] = [];
    for (const id of IDS) {
      const ref = refs.get(id)!;
      const cells = TRANSFORMS.map(([name]) => {
        const a = live.get(id)!.get(name)!;
        if (a.faces.length === 0) {
          missed.push(`${id} ${name}`);
          return '  –  ';
        }
        expect(a.faces.length, `${id} ${name}`).toBe(1);
        const d = euclideanDistance(ref.descriptor, a.faces[0]!.descriptor);
        expect(d, `${id} ${name}`).toBeLessThanOrEqual(THRESHOLD);
        return d.toFixed(3);
      });
      rows.push(`${id}  ${cells.join('  ')}`);
    }
    console.log(
      `genuine distances (threshold ${THRESHOLD}); columns: ${TRANSFORMS.map(([n]) => n).join(' | ')}\n${rows.join('\n')}\n` +
        `live frames where the live detector found no face: ${missed.length ? missed.join(', ') : 'none'}`,
    );
    // A missed face is 'no_face' (guidance to the customer), never a wrong match. TinyFaceDetector
    // is not rotation-invariant: s1f2's head is tilted 44° in the photo (52° once rotated +8°),
    // and in two of its five frames it is not found. Every other face is found in every frame.
    expect(missed.every((m) => m.startsWith('s1f2 '))).toBe(true);
    expect(missed.length).toBeLessThanOrEqual(2);
  });

  it('every pair of different people (faces of the same photo) does not match', () => {
    const rows: string[] = [];
    let min = Infinity;
    for (const a of IDS) {
      for (const b of IDS) {
        if (a === b || a.slice(0, 2) !== b.slice(0, 2)) continue;
        const d = euclideanDistance(refs.get(a)!.descriptor, single(live.get(b)!.get(TRANSFORMS[1]![0])!));
        min = Math.min(min, d);
        rows.push(`ref ${a} vs live ${b}: ${d.toFixed(3)}`);
        expect(d, `${a} vs ${b}`).toBeGreaterThan(THRESHOLD);
      }
    }
    console.log(`impostor distances (threshold ${THRESHOLD}), smallest ${min.toFixed(3)}:\n${rows.join('\n')}`);
  });
});

describe('a call, frame by frame (CallMonitor on real analyses)', () => {
  // Person X is s6f2; Y (s6f0) is a different person of the same photo.
  const framesOfX = () => TRANSFORMS.map(([name]) => live.get('s6f2')!.get(name)!);

  it('with X’s photo as reference the decision becomes match; with Y’s it becomes no_match', () => {
    const withX = new CallMonitor({ reference: refs.get('s6f2')!.descriptor });
    const withY = new CallMonitor({ reference: refs.get('s6f0')!.descriptor });
    const seq = [...framesOfX(), ...framesOfX()]; // 10 frames, 2 per second
    let rx;
    let ry;
    for (const [i, a] of seq.entries()) {
      rx = withX.onFrame(a, 1_000 + i * 500);
      ry = withY.onFrame(a, 1_000 + i * 500);
      if (i < 5) expect(rx.decision.decision).toBe('inconclusive'); // not before 6 frames
    }
    expect(rx!.decision).toMatchObject({ decision: 'match', matchFrames: 10 });
    expect(rx!.match.similarity).toBeGreaterThan(0.9);
    expect(ry!.decision).toMatchObject({ decision: 'no_match', noMatchFrames: 10 });
    expect(rx!.qualityStatus.approvalAllowed).toBe(true);
  });

  it('a still picture (the same frame over and over) is flagged frozen, blocks approval, and fails a head turn', () => {
    const still = live.get('s6f2')!.get(TRANSFORMS[0]![0])!;
    const m = new CallMonitor({ reference: refs.get('s6f2')!.descriptor });
    m.onFrame(still, 1000);
    m.issueChallenge('turn_left', 1200, 4000);
    let r;
    for (let i = 1; i < 12; i++) r = m.onFrame(still, 1000 + i * 500);
    expect(r!.quality.issues).toContain('frozen');
    const done = m.poll(5300);
    expect(done).toMatchObject({ type: 'turn_left', status: 'failed', reason: 'not_performed' });
    const snap = m.snapshot(6500);
    expect(snap.blockers).toEqual(expect.arrayContaining(['quality_inadequate', 'liveness_not_passed']));
  });

  it('document still: the small portrait is found and matches the reference', async () => {
    // The customer's face (large) and the ID-card portrait of the same person (small) in one still.
    const canvas = composeFrame(crops.get('s6f2')!, { width: 1280, height: 720, side: 420, cx: 330, cy: 360, seed: 3 });
    const card = composeFrame(rotate(crops.get('s6f2')!, 0), { width: 260, height: 340, side: 200, cx: 130, cy: 150, seed: 9 });
    for (let y = 0; y < card.height; y++) canvas.data.set(card.data.subarray(y * card.width * 3, (y + 1) * card.width * 3), ((200 + y) * 1280 + 900) * 3);
    const bytes = encodeJpeg(canvas, 90);
    const doc = await assessDocumentCapture(engine, bytes, refs.get('s6f2')!.descriptor, single(live.get('s6f2')!.get(TRANSFORMS[0]![0])!));
    expect(doc.sha256).toBe(sha256Hex(bytes));
    expect(doc.faceCount).toBe(2);
    expect(doc.documentFace).toMatchObject({ matchesReference: true, matchesLive: true });
    const other = await assessDocumentCapture(engine, bytes, refs.get('s6f0')!.descriptor);
    expect(other.documentFace?.matchesReference).toBe(false);
  });
});

/**
 * Yaw and eye-aspect-ratio on REAL landmarks: test/fixtures/faces/landmarks.json holds the 68
 * landmarks face-api found in the demo group photos (and in the same photos mirrored); see
 * test/fixtures/faces/make-fixtures.ts for how it was made. The pose labels below ("frontal",
 * "turned to their left") come from looking at the face crops.
 */
import { describe, expect, it } from 'vitest';
import {
  estimateHeadPose,
  estimateYaw,
  evaluateChallenge,
  eyeAspectRatio,
  livenessSample,
  pickChallenges,
  summarizeLiveness,
  type Challenge,
  type ChallengeResult,
  type LivenessSample,
} from '../../../src/identity/liveness.ts';
import type { Point } from '../../../src/identity/types.ts';
import { fixtureFaces, type FixtureFace } from '../../fixtures/faces/samples.ts';

const fx = fixtureFaces();
const face = (id: string): FixtureFace => {
  const f = fx.faces.find((x) => x.id === id);
  if (!f) throw new Error(`no fixture face ${id}`);
  return f;
};
/** The same face found again in the mirrored photo (sample widths: all 1920 px). */
const mirrored = (f: FixtureFace): FixtureFace => {
  const mx = 1920 - f.box.x - f.box.width;
  return fx.mirrored.filter((g) => g.sample === f.sample).sort((a, b) => Math.abs(a.box.x - mx) - Math.abs(b.box.x - mx))[0]!;
};

/** Index permutation of the 68-point scheme under a left–right mirror. */
const MIRROR: number[] = (() => {
  const m = Array.from({ length: 68 }, (_, i) => i);
  const pairs: [number, number][] = [
    ...Array.from({ length: 8 }, (_, i) => [i, 16 - i] as [number, number]),
    [17, 26], [18, 25], [19, 24], [20, 23], [21, 22],
    [31, 35], [32, 34],
    [36, 45], [37, 44], [38, 43], [39, 42], [40, 47], [41, 46],
    [48, 54], [49, 53], [50, 52], [55, 59], [56, 58], [60, 64], [61, 63], [65, 67],
  ];
  for (const [a, b] of pairs) {
    m[a] = b;
    m[b] = a;
  }
  return m;
})();
const mirrorPoints = (p: Point[]): Point[] => MIRROR.map((j) => ({ x: -p[j]!.x, y: p[j]!.y }));
const rotatePoints = (p: Point[], deg: number): Point[] => {
  const a = (deg * Math.PI) / 180;
  return p.map((q) => ({ x: q.x * Math.cos(a) - q.y * Math.sin(a), y: q.x * Math.sin(a) + q.y * Math.cos(a) }));
};

describe('head yaw from 68 landmarks (real faces)', () => {
  it('frontal faces measure within ±12°', () => {
    for (const id of ['s5f0', 's6f2', 's6f3', 's2f1']) expect(Math.abs(estimateYaw(face(id).landmarks68)), id).toBeLessThan(12);
  });

  it('faces turned to their left are positive, to their right negative, a profile beyond 45°', () => {
    for (const id of ['s5f1', 's4f0', 's3f2', 's6f0']) expect(estimateYaw(face(id).landmarks68), id).toBeGreaterThan(15);
    for (const id of ['s6f1', 's4f2', 's3f0']) expect(estimateYaw(face(id).landmarks68), id).toBeLessThan(-15);
    expect(estimateYaw(face('s2f0').landmarks68)).toBeLessThan(-45); // near-profile
  });

  it('the same face detected in the mirrored photo has the opposite yaw (landmark noise ≤ 12°)', () => {
    for (const f of fx.faces) {
      const a = estimateYaw(f.landmarks68);
      const b = estimateYaw(mirrored(f).landmarks68);
      expect(Math.abs(a + b), f.id).toBeLessThanOrEqual(12);
      if (Math.abs(a) > 15) expect(Math.sign(b), f.id).toBe(-Math.sign(a));
    }
  });

  it('is exactly antisymmetric under a mathematical mirror and ignores in-plane tilt (roll)', () => {
    for (const f of fx.faces) {
      const p = estimateHeadPose(f.landmarks68);
      expect(estimateYaw(mirrorPoints(f.landmarks68))).toBeCloseTo(-p.yaw, 6);
      const tilted = estimateHeadPose(rotatePoints(f.landmarks68, 25));
      expect(tilted.yaw).toBeCloseTo(p.yaw, 6);
      expect(tilted.pitch).toBeCloseTo(p.pitch, 6);
    }
  });

  it('refuses anything but 68 points', () => {
    expect(() => estimateYaw(face('s1f0').landmarks68.slice(0, 67))).toThrow(RangeError);
  });
});

describe('eye aspect ratio (real faces)', () => {
  it('open eyes of roughly frontal faces measure above 0.24', () => {
    for (const f of fx.faces) {
      if (f.id === 's2f1' || Math.abs(estimateYaw(f.landmarks68)) > 40) continue;
      expect(eyeAspectRatio(f.landmarks68).mean, f.id).toBeGreaterThan(0.24);
    }
  });

  it('nearly closed, downcast eyes (s2f1) measure under 0.2', () => {
    const e = eyeAspectRatio(face('s2f1').landmarks68);
    expect(e.mean).toBeLessThan(0.2);
    expect(e.mean).toBeGreaterThan(0.1);
  });
});

// --- the challenge checker, on time series built from the real measures above ------------------

const FRONTAL = face('s6f2'); // yaw ≈ +6°, EAR ≈ 0.33
const LEFT = face('s5f1'); // turned to her left, yaw ≈ +43°
const RIGHT = face('s6f1'); // turned to her right, yaw ≈ −36°
const CLOSED = face('s2f1'); // EAR ≈ 0.19

function sample(f: FixtureFace | null, t: number, extra: Partial<LivenessSample> = {}): LivenessSample {
  if (!f) return { t, faceCount: 0, yaw: null, ear: null, faceWidthRatio: null, matched: null };
  return { t, faceCount: 1, yaw: estimateYaw(f.landmarks68), ear: eyeAspectRatio(f.landmarks68).mean, faceWidthRatio: 0.3, matched: true, ...extra };
}
const challenge = (type: Challenge['type'], issuedAt = 10_000, timeout = 8000): Challenge => ({ id: `c-${type}`, type, issuedAt, deadline: issuedAt + timeout });
/** Frames every 500 ms: two before the prompt, then the given faces after it. */
function series(after: (FixtureFace | null)[], extra: (i: number) => Partial<LivenessSample> = () => ({})): LivenessSample[] {
  return [sample(FRONTAL, 9_000), sample(FRONTAL, 9_500), ...after.map((f, i) => sample(f, 10_500 + i * 500, extra(i)))];
}

describe('liveness challenges', () => {
  it('turn left passes when yaw moves ≥ 20° to the left of the baseline, and says when', () => {
    const r = evaluateChallenge(challenge('turn_left'), series([FRONTAL, LEFT, FRONTAL]), 12_000);
    expect(r).toMatchObject({ status: 'passed', reason: 'ok', passedAfterMs: 1000 });
    expect(r.baseline).toBeCloseTo(estimateYaw(FRONTAL.landmarks68), 6);
    expect(r.peak).toBeGreaterThan(40);
  });

  it('turning the wrong way does not pass a turn; the deadline fails it', () => {
    const s = series([FRONTAL, RIGHT, FRONTAL]);
    expect(evaluateChallenge(challenge('turn_left'), s, 12_000)).toMatchObject({ status: 'pending', reason: 'waiting' });
    expect(evaluateChallenge(challenge('turn_left'), s, 18_001)).toMatchObject({ status: 'failed', reason: 'not_performed' });
    expect(evaluateChallenge(challenge('turn_right'), s, 12_000).status).toBe('passed');
  });

  it('a still photo (identical landmarks in every frame) fails every challenge', () => {
    const still = series(Array(15).fill(FRONTAL));
    for (const type of ['turn_left', 'turn_right', 'blink', 'move_closer'] as const) {
      expect(evaluateChallenge(challenge(type), still, 18_001), type).toMatchObject({ status: 'failed', reason: 'not_performed' });
    }
  });

  it('blink needs open → closed → open', () => {
    expect(evaluateChallenge(challenge('blink'), series([FRONTAL, CLOSED, FRONTAL]), 12_000)).toMatchObject({ status: 'passed' });
    expect(evaluateChallenge(challenge('blink'), series([FRONTAL, CLOSED, CLOSED]), 12_000).status).toBe('pending');
    expect(evaluateChallenge(challenge('blink'), series([FRONTAL, CLOSED, CLOSED]), 18_001).status).toBe('failed');
  });

  it('move closer needs the face 25% wider than at the prompt', () => {
    const s = series([FRONTAL, FRONTAL, FRONTAL], (i) => ({ faceWidthRatio: [0.3, 0.34, 0.4][i]! }));
    expect(evaluateChallenge(challenge('move_closer'), s, 12_000)).toMatchObject({ status: 'passed', passedAfterMs: 1500 });
    const small = series([FRONTAL, FRONTAL], (i) => ({ faceWidthRatio: [0.31, 0.35][i]! }));
    expect(evaluateChallenge(challenge('move_closer'), small, 18_001).status).toBe('failed');
  });

  it('frames of someone who does not match the reference never count', () => {
    const s = series([FRONTAL, LEFT, FRONTAL], () => ({ matched: false }));
    expect(evaluateChallenge(challenge('turn_left'), s, 18_001)).toMatchObject({ status: 'failed', reason: 'identity_mismatch' });
  });

  it('frames with two faces never count; no face at all fails as face_lost', () => {
    const two = series([FRONTAL, LEFT, FRONTAL], (i) => (i === 1 ? { faceCount: 2 } : {}));
    expect(evaluateChallenge(challenge('turn_left'), two, 18_001).status).toBe('failed');
    const gone = [sample(FRONTAL, 9_500), sample(null, 10_500), sample(null, 11_000)];
    expect(evaluateChallenge(challenge('turn_left'), gone, 18_001)).toMatchObject({ status: 'failed', reason: 'face_lost' });
  });

  it('without frames before the prompt, the first frame after it is the baseline', () => {
    const s = [sample(FRONTAL, 10_600), sample(LEFT, 11_000)];
    expect(evaluateChallenge(challenge('turn_left'), s, 11_000).status).toBe('passed');
    expect(evaluateChallenge(challenge('turn_left'), [], 18_001)).toMatchObject({ status: 'failed', reason: 'no_baseline' });
  });

  it('frames after the deadline do not count', () => {
    const s = [...series([FRONTAL]), sample(LEFT, 18_500)];
    expect(evaluateChallenge(challenge('turn_left'), s, 19_000).status).toBe('failed');
  });

  it('livenessSample measures the largest face', () => {
    const small = { ...FRONTAL, box: { ...FRONTAL.box, width: 50, height: 50 } };
    const s = livenessSample({ width: 1920, faces: [small, LEFT].map((f) => ({ ...f, descriptor: new Float32Array(128), luma: 100, sharpness: 100 })) }, 5);
    expect(s.faceCount).toBe(2);
    expect(s.yaw).toBeCloseTo(estimateYaw(LEFT.landmarks68), 6);
    expect(s.faceWidthRatio).toBeCloseTo(LEFT.box.width / 1920, 6);
  });
});

describe('picking and summarising challenges', () => {
  it('draws without repeats and always includes a head turn', () => {
    let seed = 1;
    const rand = (n: number) => (seed = (seed * 48271) % 2147483647) % n;
    for (let k = 0; k < 50; k++) {
      const c = pickChallenges(3, rand);
      expect(new Set(c).size).toBe(3);
      expect(c.some((t) => t.startsWith('turn_'))).toBe(true);
    }
    expect(pickChallenges(1, () => 0)[0]).toMatch(/^turn_/);
    expect(pickChallenges(6).length).toBe(6);
    expect(() => pickChallenges(0)).toThrow(RangeError);
  });

  it('overall: passed only when enough challenges were issued and all passed', () => {
    const r = (status: ChallengeResult['status']) => ({ status }) as ChallengeResult;
    expect(summarizeLiveness([r('passed'), r('passed')]).status).toBe('passed');
    expect(summarizeLiveness([r('passed')]).status).toBe('pending');
    expect(summarizeLiveness([r('passed'), r('pending')]).status).toBe('pending');
    expect(summarizeLiveness([r('passed'), r('failed'), r('passed')])).toEqual({ status: 'failed', passed: 2, failed: 1, pending: 0 });
  });
});

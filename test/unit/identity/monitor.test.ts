/**
 * CallMonitor's bookkeeping on synthetic analyses built from REAL landmarks (fixture faces);
 * the descriptors are synthetic (distance d from the reference along one axis).
 */
import { describe, expect, it } from 'vitest';
import { CallMonitor, ChallengeConflictError } from '../../../src/identity/monitor.ts';
import type { FaceObservation, FrameAnalysis, Point } from '../../../src/identity/types.ts';
import { fixtureFaces } from '../../fixtures/faces/samples.ts';

const ref = Float32Array.from({ length: 128 }, (_, i) => Math.cos(i) / 10);
const lm = (id: string): Point[] => {
  const f = fixtureFaces().faces.find((x) => x.id === id)!;
  // move the face into a 640×480 frame: centre it, keep its size
  const cx = f.box.x + f.box.width / 2;
  const cy = f.box.y + f.box.height / 2;
  return f.landmarks68.map((p) => ({ x: p.x - cx + 320, y: p.y - cy + 240 }));
};
const FRONTAL = lm('s6f2');
const LEFT = lm('s5f1'); // yaw ≈ +43°
const PROFILE = lm('s2f0'); // yaw ≈ −61°

let seed = 0;
function frame(d: number, landmarks = FRONTAL, faces = 1): FrameAnalysis {
  const descriptor = new Float32Array(ref);
  descriptor[0] = descriptor[0]! + d;
  const face: FaceObservation = { box: { x: 220, y: 120, width: 200, height: 240 }, score: 0.9, landmarks68: landmarks, descriptor, luma: 120, sharpness: 8 };
  seed++;
  return {
    width: 640,
    height: 480,
    detector: 'tiny',
    faces: Array.from({ length: faces }, () => face),
    stats: { meanLuma: 100, thumb: new Uint8Array(64 * 48).fill(seed & 255) },
    ms: 100,
  };
}

describe('CallMonitor', () => {
  it('reports per frame: verdict, similarity, decision, quality, pose', () => {
    const m = new CallMonitor({ reference: ref });
    const r = m.onFrame(frame(0.2), 0);
    expect(r.match).toMatchObject({ verdict: 'match', faceCount: 1 });
    expect(r.match.distance).toBeCloseTo(0.2, 5);
    expect(r.match.similarity).toBeGreaterThan(0.9);
    expect(r.decision.decision).toBe('inconclusive');
    expect(r.quality.adequate).toBe(true);
    expect(Math.abs(r.pose!.yaw)).toBeLessThan(12);
    expect(m.onFrame(frame(0.2, FRONTAL, 2), 500).match.verdict).toBe('multiple_faces');
  });

  it('near-profile frames count for neither side of the decision', () => {
    const m = new CallMonitor({ reference: ref });
    expect(m.onFrame(frame(0.9, PROFILE), 0).match.verdict).toBe('unusable');
    expect(m.onFrame(frame(0.2, LEFT), 500).match.verdict).toBe('match'); // 43° still counts
  });

  it('one challenge at a time; poll returns the result once; approval needs all three', () => {
    const m = new CallMonitor({ reference: ref });
    let t = 0;
    for (let i = 0; i < 6; i++) m.onFrame(frame(0.2), (t += 500));
    const c = m.issueChallenge('turn_left', t, 5000);
    expect(() => m.issueChallenge('blink', t)).toThrow(ChallengeConflictError);
    expect(m.poll(t)).toBeNull();
    const r = m.onFrame(frame(0.2, LEFT), (t += 500));
    expect(r.challenge).toMatchObject({ challengeId: c.id, status: 'passed' });
    expect(m.poll(t)).toMatchObject({ type: 'turn_left', status: 'passed' });
    expect(m.poll(t)).toBeNull();
    expect(m.snapshot(t).blockers).toEqual(['liveness_not_passed']); // one of two challenges
    m.issueChallenge('turn_right', t, 3000);
    for (let i = 0; i < 7; i++) m.onFrame(frame(0.2), (t += 500)); // never turns right; deadline passes
    expect(m.poll(t)).toMatchObject({ type: 'turn_right', status: 'failed', reason: 'not_performed' });
    expect(m.snapshot(t).liveness.status).toBe('failed');
  });

  it('an expired challenge is closed when the next one is issued', () => {
    const m = new CallMonitor({ reference: ref });
    m.onFrame(frame(0.2), 0);
    m.issueChallenge('blink', 100, 1000);
    m.issueChallenge('turn_left', 5000);
    expect(m.snapshot(5000).challenges.map((c) => [c.type, c.status])).toEqual([
      ['blink', 'failed'],
      ['turn_left', 'pending'],
    ]);
  });

  it('refuses a reference that is not a 128-d descriptor and an invalid rule', () => {
    expect(() => new CallMonitor({ reference: new Float32Array(64) })).toThrow(RangeError);
    expect(() => new CallMonitor({ reference: ref, match: { windowFrames: 10, minFrames: 3 } })).toThrow(RangeError);
  });
});

/**
 * Capture-quality measures on real faces (the face-api demo photos, boxes from
 * test/fixtures/faces/landmarks.json), and the quality rules. No model runs here: the measures
 * are the same pure functions the engine's workers run.
 */
import { describe, expect, it } from 'vitest';
import {
  assessFrameQuality,
  DEFAULT_QUALITY_CONFIG,
  faceRegionStats,
  frameStats,
  QualityTracker,
  thumbDifference,
} from '../../../src/identity/quality.ts';
import type { Box, FaceObservation, FrameAnalysis } from '../../../src/identity/types.ts';
import { boxBlur, brightness, faceSquare, fixtureFaces, jpegRoundTrip, loadSample } from '../../fixtures/faces/samples.ts';

const cfg = DEFAULT_QUALITY_CONFIG;
// Eight faces across the six photos, including the softest ones (s4f0, s4f2).
const IDS = ['s1f0', 's2f2', 's3f1', 's4f0', 's4f2', 's5f0', 's6f1', 's6f3'];
const crops = IDS.map((id) => {
  const f = fixtureFaces().faces.find((x) => x.id === id)!;
  const sq = faceSquare(loadSample(f.sample), f.box, 1.4);
  const box: Box = { x: (sq.width - f.box.width) / 2, y: (sq.height - f.box.height) / 2, width: f.box.width, height: f.box.height };
  return { id, sq, box };
});

describe('face region measures on real faces', () => {
  it('sharp originals and JPEG q30 pass; a 4 px box blur is flagged', () => {
    for (const { id, sq, box } of crops) {
      expect(faceRegionStats(sq, box).sharpness, id).toBeGreaterThanOrEqual(cfg.minSharpness);
      expect(faceRegionStats(jpegRoundTrip(sq, 30), box).sharpness, id).toBeGreaterThanOrEqual(cfg.minSharpness);
      expect(faceRegionStats(boxBlur(sq, 4), box).sharpness, id).toBeLessThan(cfg.minSharpness);
    }
  });

  it('sharpness does not depend on exposure; luma does', () => {
    for (const { id, sq, box } of crops) {
      const a = faceRegionStats(sq, box);
      const dark = faceRegionStats(brightness(sq, 0.5), box);
      expect(Math.abs(dark.sharpness - a.sharpness) / a.sharpness, id).toBeLessThan(0.15);
      expect(dark.luma).toBeCloseTo(a.luma / 2, -0.5);
    }
  });

  it('normal exposure passes; a fifth of it is too dark for every face', () => {
    for (const { id, sq, box } of crops) {
      expect(faceRegionStats(sq, box).luma, id).toBeGreaterThanOrEqual(cfg.minFaceLuma);
      expect(faceRegionStats(brightness(sq, 0.2), box).luma, id).toBeLessThan(cfg.minFaceLuma);
    }
  });

  it('frame stats: mean luma and a 64×48 thumbnail', () => {
    const s = frameStats(crops[0]!.sq);
    expect(s.thumb.length).toBe(64 * 48);
    expect(s.meanLuma).toBeGreaterThan(10);
    expect(thumbDifference(s.thumb, s.thumb)).toBe(0);
    expect(thumbDifference(s.thumb, frameStats(brightness(crops[0]!.sq, 0.8)).thumb)).toBeGreaterThan(5);
  });
});

// --- rules -------------------------------------------------------------------------------------

function obs(box: Box, over: Partial<FaceObservation> = {}): FaceObservation {
  return { box, score: 0.9, landmarks68: [], descriptor: new Float32Array(128), luma: 120, sharpness: 8, ...over };
}
function analysis(faces: FaceObservation[], thumbSeed = 0): FrameAnalysis {
  const thumb = new Uint8Array(64 * 48).map((_, i) => (i * 7 + thumbSeed * 31) & 255);
  return { width: 640, height: 480, detector: 'tiny', faces, stats: { meanLuma: 100, thumb }, ms: 100 };
}
const GOOD: Box = { x: 220, y: 120, width: 200, height: 240 };

describe('frame quality rules', () => {
  it('a well-lit, sharp, centred face of good size is adequate', () => {
    expect(assessFrameQuality(analysis([obs(GOOD)]), false)).toEqual({ adequate: true, issues: [], guidance: [], reasons: [] });
  });

  it('each problem gives an issue, guidance for the customer and a reason for the teller', () => {
    const cases: [FrameAnalysis, boolean, string, string][] = [
      [analysis([]), false, 'no_face', 'show_your_face'],
      [analysis([obs(GOOD), obs({ x: 10, y: 10, width: 100, height: 120 })]), false, 'multiple_faces', 'only_you_in_picture'],
      [analysis([obs(GOOD, { luma: 20 })]), false, 'too_dark', 'more_light'],
      [analysis([obs(GOOD, { luma: 240 })]), false, 'too_bright', 'less_light'],
      [analysis([obs(GOOD, { sharpness: 1 })]), false, 'blurred', 'hold_still_clean_lens'],
      [analysis([obs({ x: 300, y: 200, width: 60, height: 70 })]), false, 'face_too_small', 'move_closer'],
      [analysis([obs({ x: 500, y: 100, width: 200, height: 240 })]), false, 'face_cut_off', 'center_your_face'],
      [analysis([obs({ x: 220, y: -20, width: 200, height: 240 })]), false, 'face_cut_off', 'center_your_face'],
      [analysis([obs(GOOD)]), true, 'frozen', 'check_your_camera'],
    ];
    for (const [a, frozen, issue, guidance] of cases) {
      const q = assessFrameQuality(a, frozen);
      expect(q.adequate, issue).toBe(false);
      expect(q.issues, issue).toContain(issue);
      expect(q.guidance, issue).toContain(guidance);
      expect(q.reasons.length).toBe(q.issues.length);
    }
  });
});

describe('QualityTracker', () => {
  it('detects frozen video after 6 identical frames, and recovers when frames change', () => {
    const t = new QualityTracker();
    const same = analysis([obs(GOOD)], 1);
    const results = Array.from({ length: 8 }, (_, i) => t.push(same, i * 500));
    expect(results.slice(0, 5).every((q) => !q.issues.includes('frozen'))).toBe(true);
    expect(results[5]!.issues).toContain('frozen');
    expect(t.push(analysis([obs(GOOD)], 2), 4000).issues).not.toContain('frozen');
  });

  it('blocks approval until 6 of the last 10 frames are adequate, and again when quality stays bad', () => {
    const t = new QualityTracker();
    let n = 0;
    const push = (good: boolean) => t.push(analysis([obs(GOOD, good ? {} : { luma: 10 })], ++n), n * 500);
    for (let i = 0; i < 5; i++) push(true);
    expect(t.status(n * 500).approvalAllowed).toBe(false);
    push(true);
    expect(t.status(n * 500)).toMatchObject({ approvalAllowed: true, adequateFrames: 6, framesInWindow: 6 });
    for (let i = 0; i < 5; i++) push(false);
    const s = t.status(n * 500);
    expect(s).toMatchObject({ approvalAllowed: false, adequateFrames: 5, framesInWindow: 10 });
    expect(s.topIssues[0]).toEqual({ issue: 'too_dark', frames: 5 });
  });

  it('blocks approval when frames stop coming', () => {
    const t = new QualityTracker();
    for (let i = 0; i < 10; i++) t.push(analysis([obs(GOOD)], i), i * 500);
    expect(t.status(4500).approvalAllowed).toBe(true);
    expect(t.status(4500 + cfg.maxAgeMs + 1).approvalAllowed).toBe(false);
  });
});


import { describe, expect, it } from 'vitest';
import {
  classifyFrame,
  decide,
  DEFAULT_MATCH_CONFIG,
  euclideanDistance,
  MatchTracker,
  similarity,
  validateMatchConfig,
  type FrameMatch,
  type TimedVerdict,
} from '../../../src/identity/scoring.ts';

/** A unit-length 128-d vector along axis `i`, and one at distance `d` from it. */
function unit(i: number): Float32Array {
  const v = new Float32Array(128);
  v[i] = 1;
  return v;
}
function at(ref: Float32Array, d: number, axis = 127): Float32Array {
  const v = new Float32Array(ref);
  v[axis] = v[axis]! + d;
  return v;
}
const ref = unit(0);
const cfg = DEFAULT_MATCH_CONFIG;

describe('distance and similarity', () => {
  it('is the Euclidean distance, symmetric, and refuses mismatched lengths', () => {
    expect(euclideanDistance(unit(0), unit(1))).toBeCloseTo(Math.SQRT2, 6);
    expect(euclideanDistance(ref, at(ref, 0.3))).toBeCloseTo(0.3, 6);
    expect(euclideanDistance(unit(3), unit(5))).toBe(euclideanDistance(unit(5), unit(3)));
    expect(() => euclideanDistance(new Float32Array(128), new Float32Array(127))).toThrow(RangeError);
  });

  it('similarity is 0.5 exactly at the threshold, decreasing, within (0, 1)', () => {
    expect(similarity(cfg.threshold)).toBeCloseTo(0.5, 10);
    const ds = [0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.4];
    const ss = ds.map((d) => similarity(d));
    for (let i = 1; i < ss.length; i++) expect(ss[i]).toBeLessThan(ss[i - 1]!);
    expect(ss[0]).toBeLessThan(1);
    expect(ss.at(-1)).toBeGreaterThan(0);
    expect(similarity(cfg.threshold - 2 * cfg.similarityScale)).toBeCloseTo(0.881, 3);
    // follows a configured threshold
    expect(similarity(0.6, { threshold: 0.6, similarityScale: 0.05 })).toBeCloseTo(0.5, 10);
  });
});

describe('per-frame verdict', () => {
  const face = (d: number, score = 0.9) => ({ descriptor: at(ref, d), score });

  it('one usable face under / at / over the threshold', () => {
    expect(classifyFrame([face(0.3)], ref, true).verdict).toBe('match');
    expect(classifyFrame([face(cfg.threshold)], ref, true).verdict).toBe('match');
    expect(classifyFrame([face(cfg.threshold + 0.01)], ref, true).verdict).toBe('no_match');
  });

  it('flags no face and several faces; several faces never count as a match', () => {
    expect(classifyFrame([], ref, true)).toEqual({ verdict: 'no_face', faceCount: 0, distance: null, similarity: null, detectionScore: null });
    const two = classifyFrame([face(0.9), face(0.1)], ref, true);
    expect(two.verdict).toBe('multiple_faces');
    expect(two.faceCount).toBe(2);
    expect(two.distance).toBeCloseTo(0.1, 6); // the closest face, for information
  });

  it('unusable when quality is inadequate or the detection is weak', () => {
    expect(classifyFrame([face(0.1)], ref, false).verdict).toBe('unusable');
    expect(classifyFrame([face(0.1, 0.3)], ref, true).verdict).toBe('unusable');
  });
});

describe('rolling decision: at least minFrames of the last windowFrames', () => {
  const seq = (verdicts: string, t0 = 0, step = 500): TimedVerdict[] =>
    [...verdicts].map((c, i) => ({
      t: t0 + i * step,
      verdict: ({ m: 'match', n: 'no_match', z: 'no_face', x: 'multiple_faces', u: 'unusable' } as const)[c as 'm']!,
      distance: c === 'm' ? 0.3 : c === 'n' ? 0.8 : null,
    }));
  const last = (h: TimedVerdict[]) => h.at(-1)!.t;

  it('needs 6 matches in the last 10 frames for match', () => {
    expect(decide(seq('mmmmm'), 2000).decision).toBe('inconclusive');
    expect(decide(seq('mmmmmm'), 2500).decision).toBe('match');
    const h = seq('mmmnmnmnmn');
    expect(decide(h, last(h))).toMatchObject({ decision: 'match', matchFrames: 6, noMatchFrames: 4 });
    const five = seq('mmnmnmnmnn');
    expect(decide(five, last(five))).toMatchObject({ decision: 'inconclusive', matchFrames: 5, noMatchFrames: 5 });
  });

  it('needs 6 no-matches for no_match; a mix is inconclusive', () => {
    const h = seq('nnnnnnmmmm');
    expect(decide(h, last(h)).decision).toBe('no_match');
    const mix = seq('mmmmmnnnnn');
    expect(decide(mix, last(mix)).decision).toBe('inconclusive');
  });

  it('one stray frame does not flip a decision', () => {
    const h = seq('mmmmmmmmmn');
    expect(decide(h, last(h)).decision).toBe('match');
  });

  it('frames with no face, several faces or bad quality count for neither, and are counted', () => {
    const h = seq('mmmmmzzxxu');
    expect(decide(h, last(h))).toMatchObject({ decision: 'inconclusive', matchFrames: 5, otherFrames: 5, noFaceFrames: 2, multipleFaceFrames: 2 });
  });

  it('only the last windowFrames frames count', () => {
    const h = seq('nnnnnnnnnnmmmmmm');
    expect(decide(h, last(h))).toMatchObject({ decision: 'match', framesInWindow: 10 });
  });

  it('decays to inconclusive when frames stop arriving (maxAgeMs)', () => {
    const h = seq('mmmmmmmmmm');
    expect(decide(h, last(h)).decision).toBe('match');
    expect(decide(h, last(h) + cfg.maxAgeMs + 1).decision).toBe('inconclusive');
  });

  it('reports the median distance of the counted frames', () => {
    const h = seq('mmmn');
    expect(decide(h, last(h)).medianDistance).toBeCloseTo(0.3, 6);
  });

  it('MatchTracker keeps a bounded history and gives the same answers', () => {
    const t = new MatchTracker();
    const fm = (verdict: FrameMatch['verdict']): FrameMatch => ({ verdict, faceCount: 1, distance: verdict === 'match' ? 0.2 : 0.9, similarity: null, detectionScore: 0.9 });
    let s;
    for (let i = 0; i < 5; i++) s = t.push(fm('no_match'), i * 500);
    for (let i = 5; i < 11; i++) s = t.push(fm('match'), i * 500);
    expect(s).toMatchObject({ decision: 'match', matchFrames: 6, noMatchFrames: 4, framesInWindow: 10 });
    expect(t.state(5000 + cfg.maxAgeMs + 1).decision).toBe('inconclusive');
  });

  it('refuses a rule where match and no_match could both hold', () => {
    expect(() => validateMatchConfig({ ...cfg, windowFrames: 10, minFrames: 5 })).toThrow(/more than half/);
    expect(() => validateMatchConfig({ ...cfg, threshold: 0 })).toThrow();
    expect(() => validateMatchConfig(cfg)).not.toThrow();
  });
});

/**
 * Face matching: distance between descriptors, a similarity score for people, and the per-call
 * rolling decision. Pure; no I/O.
 *
 * Per frame (classifyFrame):
 *   - no face                          → 'no_face'
 *   - more than one face               → 'multiple_faces' (flagged; never counts for a match)
 *   - one face, but the frame is not usable (capture quality inadequate, or detection score
 *     under minDetectionScore)          → 'unusable'
 *   - one usable face, distance ≤ threshold → 'match', else 'no_match'
 *
 * Per call (decide), over the last `windowFrames` frames, none older than `maxAgeMs`:
 *   - at least `minFrames` 'match' frames    → 'match'
 *   - at least `minFrames` 'no_match' frames → 'no_match'
 *   - otherwise                              → 'inconclusive'
 * `minFrames` must be more than half of `windowFrames`, so the two cannot both hold. With the
 * defaults (6 of the last 10, at 2 frames/s: 6 of the last 5 s) one bad frame never flips the
 * decision, a stream that stops decays to 'inconclusive' within maxAgeMs, and the earliest
 * decision comes after 6 analysed frames.
 */
import type { FaceObservation } from './types.ts';

export function euclideanDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`descriptor lengths differ (${a.length} vs ${b.length})`);
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return Math.sqrt(s);
}

export interface MatchConfig {
  /** Euclidean distance at or under which one frame's face counts as the reference person. */
  threshold: number;
  /** Width of the similarity curve around the threshold (distance units). */
  similarityScale: number;
  windowFrames: number;
  minFrames: number;
  maxAgeMs: number;
  /** A face detected with less confidence does not count either way. */
  minDetectionScore: number;
}

/**
 * Defaults. The threshold, 0.45, comes from `node --import tsx bench/face-match.ts
 * --only=distances` (2026-11-22; the figures are in src/identity/README.md): 20 real faces of the
 * face-api demo photos, the reference analysed as an uploaded crop (SsdMobilenetv1), the live
 * side as 640×480 frames (TinyFaceDetector) of the same crops rescaled, rotated ±8°, brightened,
 * darkened, JPEG q30 and all combined:
 *   genuine (same face, transformed)          n=169  median 0.118  p95 0.181  max 0.210
 *   different people, same photo (certain)    n=52   min 0.533  p5 0.580  median 0.698
 *   different photos (probably different)     n=328  min 0.423  p5 0.604  median 0.754
 * 0.45 stays 0.08 under every pair of certainly different people and more than twice the
 * largest genuine distance. It accepts 2 of 380 impostor frames here (one look-alike pair
 * from two photos, 0.42–0.44; 0.50 accepts the same two), against 5.5% at the 0.6 usually
 * quoted for this model: faces of similar-looking people (this set: young women, similar
 * styling) come closer than that. A single frame never decides anyway (N of M below).
 * What this does not measure: genuine pairs here are the same photo transformed, so they are
 * much closer than a years-old ID photo and a live webcam, where distances of 0.3–0.5 are
 * common for this model. Expect 'inconclusive' in some real calls, left to the teller, rather
 * than false 'match'; revisit the default with real call data. No claim is made about error
 * rates for groups of people this set does not contain.
 */
export const DEFAULT_MATCH_CONFIG: Readonly<MatchConfig> = Object.freeze({
  threshold: 0.45,
  similarityScale: 0.05,
  windowFrames: 10,
  minFrames: 6,
  maxAgeMs: 10_000,
  minDetectionScore: 0.5,
});

export function validateMatchConfig(cfg: MatchConfig): void {
  if (!(cfg.threshold > 0 && cfg.threshold < 2)) throw new RangeError('threshold must be in (0, 2)');
  if (!(cfg.similarityScale > 0)) throw new RangeError('similarityScale must be positive');
  if (!Number.isInteger(cfg.windowFrames) || cfg.windowFrames < 1) throw new RangeError('windowFrames must be a positive integer');
  if (!Number.isInteger(cfg.minFrames) || cfg.minFrames * 2 <= cfg.windowFrames || cfg.minFrames > cfg.windowFrames) {
    throw new RangeError('minFrames must be more than half of windowFrames and at most windowFrames');
  }
}

/**
 * Similarity for people, 0..1: a logistic curve of the distance, exactly 0.5 at the threshold,
 * ≈0.88 at threshold − 2·scale and ≈0.12 at threshold + 2·scale. Monotone in the distance, so it
 * never disagrees with the decision rule; it is a display score, not a probability.
 */
export function similarity(distance: number, cfg: Pick<MatchConfig, 'threshold' | 'similarityScale'> = DEFAULT_MATCH_CONFIG): number {
  return 1 / (1 + Math.exp((distance - cfg.threshold) / cfg.similarityScale));
}

export type FrameVerdict = 'match' | 'no_match' | 'no_face' | 'multiple_faces' | 'unusable';

export interface FrameMatch {
  verdict: FrameVerdict;
  faceCount: number;
  /** Distance and similarity of the single face (or, with several faces, of the closest one, for information). */
  distance: number | null;
  similarity: number | null;
  detectionScore: number | null;
}

export function classifyFrame(
  faces: readonly Pick<FaceObservation, 'descriptor' | 'score'>[],
  reference: ArrayLike<number>,
  usable: boolean,
  cfg: MatchConfig = DEFAULT_MATCH_CONFIG,
): FrameMatch {
  if (faces.length === 0) return { verdict: 'no_face', faceCount: 0, distance: null, similarity: null, detectionScore: null };
  const scored = faces.map((f) => ({ f, d: euclideanDistance(f.descriptor, reference) }));
  const best = scored.reduce((a, b) => (b.d < a.d ? b : a));
  const base = { faceCount: faces.length, distance: best.d, similarity: similarity(best.d, cfg), detectionScore: best.f.score };
  if (faces.length > 1) return { verdict: 'multiple_faces', ...base };
  if (!usable || best.f.score < cfg.minDetectionScore) return { verdict: 'unusable', ...base };
  return { verdict: best.d <= cfg.threshold ? 'match' : 'no_match', ...base };
}

export type Decision = 'match' | 'no_match' | 'inconclusive';

export interface DecisionState {
  decision: Decision;
  matchFrames: number;
  noMatchFrames: number;
  /** Frames in the window that counted for neither (no face, several faces, unusable). */
  otherFrames: number;
  framesInWindow: number;
  noFaceFrames: number;
  multipleFaceFrames: number;
  /** Median distance of the single-face usable frames in the window, or null. */
  medianDistance: number | null;
}

export interface TimedVerdict {
  t: number;
  verdict: FrameVerdict;
  distance: number | null;
}

/** The rolling decision over a history of frame verdicts (oldest first), at time `now`. */
export function decide(history: readonly TimedVerdict[], now: number, cfg: MatchConfig = DEFAULT_MATCH_CONFIG): DecisionState {
  const recent = history.slice(-cfg.windowFrames).filter((f) => now - f.t <= cfg.maxAgeMs);
  let matchFrames = 0;
  let noMatchFrames = 0;
  let noFaceFrames = 0;
  let multipleFaceFrames = 0;
  const distances: number[] = [];
  for (const f of recent) {
    if (f.verdict === 'match') matchFrames++;
    else if (f.verdict === 'no_match') noMatchFrames++;
    else if (f.verdict === 'no_face') noFaceFrames++;
    else if (f.verdict === 'multiple_faces') multipleFaceFrames++;
    if ((f.verdict === 'match' || f.verdict === 'no_match') && f.distance !== null) distances.push(f.distance);
  }
  const decision: Decision = matchFrames >= cfg.minFrames ? 'match' : noMatchFrames >= cfg.minFrames ? 'no_match' : 'inconclusive';
  return {
    decision,
    matchFrames,
    noMatchFrames,
    otherFrames: recent.length - matchFrames - noMatchFrames,
    framesInWindow: recent.length,
    noFaceFrames,
    multipleFaceFrames,
    medianDistance: median(distances),
  };
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Per-call history for `decide`, bounded to the window. */
export class MatchTracker {
  private readonly history: TimedVerdict[] = [];

  constructor(private readonly cfg: MatchConfig = DEFAULT_MATCH_CONFIG) {
    validateMatchConfig(cfg);
  }

  push(frame: FrameMatch, t: number): DecisionState {
    this.history.push({ t, verdict: frame.verdict, distance: frame.distance });
    while (this.history.length > this.cfg.windowFrames) this.history.shift();
    return decide(this.history, t, this.cfg);
  }

  state(now: number): DecisionState {
    return decide(this.history, now, this.cfg);
  }
}

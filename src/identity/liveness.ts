/**
 * Liveness from 68 face landmarks: head pose from landmark geometry, eye aspect ratio for
 * blinks, and the checker for the active challenges (turn left, turn right, blink, move closer)
 * the server issues one at a time, each with a deadline. Pure, except pickChallenges which
 * draws from a CSPRNG so a pre-recorded video cannot anticipate the sequence.
 *
 * Conventions: the server sees the customer's camera unmirrored (browsers mirror only their
 * local preview). "Left" is always the customer's own left: turning left moves the nose
 * towards the right of the image, and gives a positive yaw.
 */
import { randomInt } from 'node:crypto';
import type { Box, FrameAnalysis, Point } from './types.ts';

// ---------------------------------------------------------------------------------------------
// Head pose

/**
 * A generic 3-D face (arbitrary units, x to the face's left as seen by the camera, y up, z out
 * of the face towards the camera; nose tip at the origin). The six points and their coordinates
 * are the usual ones for weak-perspective head-pose estimation from iBUG-68 landmarks.
 */
const MODEL_POINTS: readonly { index: number; p: readonly [number, number, number] }[] = [
  { index: 30, p: [0, 0, 0] }, // nose tip
  { index: 8, p: [0, -330, -65] }, // chin
  { index: 36, p: [-225, 170, -135] }, // outer corner of the eye on the image's left
  { index: 45, p: [225, 170, -135] }, // outer corner of the eye on the image's right
  { index: 48, p: [-150, -150, -125] }, // mouth corner, image left
  { index: 54, p: [150, -150, -125] }, // mouth corner, image right
];

export interface HeadPose {
  /** Degrees; positive = the customer turned to their left (nose towards image right). */
  yaw: number;
  /** Degrees; positive = chin up. Rough: the generic model's depth is least reliable here. */
  pitch: number;
  /** Degrees; in-plane tilt of the eye line, positive = clockwise in the image. */
  roll: number;
}

function assert68(landmarks: readonly Point[]): void {
  if (landmarks.length !== 68) throw new RangeError(`expected 68 landmarks, got ${landmarks.length}`);
}

/**
 * Weak-perspective (scaled orthographic) pose: the least-squares affine map from the 3-D model
 * points to the observed landmarks, orthonormalised into a rotation. Yaw and pitch are taken
 * from the rotated face normal, so they do not change when the head only tilts in the image
 * plane (roll). A flat photo turned in front of the camera only foreshortens the face: the
 * fit sees no depth change and reports no yaw, which is what a liveness check wants.
 */
export function estimateHeadPose(landmarks: readonly Point[]): HeadPose {
  assert68(landmarks);
  const n = MODEL_POINTS.length;
  // Centre both point sets.
  const X = MODEL_POINTS.map((m) => m.p);
  const Y = MODEL_POINTS.map((m) => {
    const q = landmarks[m.index]!;
    return [q.x, -q.y] as const; // image y points down; the model's points up
  });
  const mx = [0, 1, 2].map((k) => X.reduce((s, p) => s + p[k]!, 0) / n);
  const my = [0, 1].map((k) => Y.reduce((s, p) => s + p[k]!, 0) / n);
  const Xc = X.map((p) => [p[0] - mx[0]!, p[1] - mx[1]!, p[2] - mx[2]!]);
  const Yc = Y.map((p) => [p[0] - my[0]!, p[1] - my[1]!]);
  // A (2×3) = Ycᵀ Xc (Xcᵀ Xc)⁻¹
  const XtX = mat3((i, j) => Xc.reduce((s, p) => s + p[i]! * p[j]!, 0));
  const inv = invert3(XtX);
  const rows = [0, 1].map((r) => {
    const yx = [0, 1, 2].map((j) => Yc.reduce((s, p, k) => s + p[r]! * Xc[k]![j]!, 0));
    return [0, 1, 2].map((j) => yx[0]! * inv[0]![j]! + yx[1]! * inv[1]![j]! + yx[2]! * inv[2]![j]!);
  });
  const r1 = normalize(rows[0]!);
  // Gram–Schmidt: make r2 orthogonal to r1.
  const d = dot(rows[1]!, r1);
  const r2 = normalize(rows[1]!.map((v, i) => v - d * r1[i]!));
  const r3 = cross(r1, r2);
  const deg = 180 / Math.PI;
  const yaw = Math.atan2(-r3[0]!, r3[2]!) * deg;
  const pitch = Math.asin(Math.max(-1, Math.min(1, r3[1]!))) * deg;
  const le = landmarks[36]!;
  const re = landmarks[45]!;
  const roll = Math.atan2(re.y - le.y, re.x - le.x) * deg;
  return { yaw, pitch, roll };
}

export function estimateYaw(landmarks: readonly Point[]): number {
  return estimateHeadPose(landmarks).yaw;
}

function mat3(f: (i: number, j: number) => number): number[][] {
  return [0, 1, 2].map((i) => [0, 1, 2].map((j) => f(i, j)));
}
function invert3(m: number[][]): number[][] {
  const [a, b, c] = m[0]!;
  const [d, e, f] = m[1]!;
  const [g, h, i] = m[2]!;
  const A = e! * i! - f! * h!;
  const B = -(d! * i! - f! * g!);
  const C = d! * h! - e! * g!;
  const det = a! * A + b! * B + c! * C;
  if (Math.abs(det) < 1e-12) throw new RangeError('degenerate model points');
  return [
    [A / det, -(b! * i! - c! * h!) / det, (b! * f! - c! * e!) / det],
    [B / det, (a! * i! - c! * g!) / det, -(a! * f! - c! * d!) / det],
    [C / det, -(a! * h! - b! * g!) / det, (a! * e! - b! * d!) / det],
  ];
}
function dot(a: number[], b: number[]): number {
  return a[0]! * b[0]! + a[1]! * b[1]! + a[2]! * b[2]!;
}
function normalize(a: number[]): number[] {
  const l = Math.hypot(a[0]!, a[1]!, a[2]!) || 1;
  return a.map((v) => v / l);
}
function cross(a: number[], b: number[]): number[] {
  return [a[1]! * b[2]! - a[2]! * b[1]!, a[2]! * b[0]! - a[0]! * b[2]!, a[0]! * b[1]! - a[1]! * b[0]!];
}

// ---------------------------------------------------------------------------------------------
// Eyes

function dist(p: Point, q: Point): number {
  return Math.hypot(p.x - q.x, p.y - q.y);
}

/** Eye aspect ratio (Soukupová & Čech 2016) of the six landmarks of one eye, p1..p6. */
function ear6(p: readonly Point[], i: number): number {
  const p1 = p[i]!;
  const p2 = p[i + 1]!;
  const p3 = p[i + 2]!;
  const p4 = p[i + 3]!;
  const p5 = p[i + 4]!;
  const p6 = p[i + 5]!;
  const w = dist(p1, p4);
  return w > 0 ? (dist(p2, p6) + dist(p3, p5)) / (2 * w) : 0;
}

/** EAR of both eyes (36–41 on the image's left, 42–47 on its right) and their mean. */
export function eyeAspectRatio(landmarks: readonly Point[]): { left: number; right: number; mean: number } {
  assert68(landmarks);
  const left = ear6(landmarks, 36);
  const right = ear6(landmarks, 42);
  return { left, right, mean: (left + right) / 2 };
}

// ---------------------------------------------------------------------------------------------
// Challenges

export const CHALLENGE_TYPES = ['turn_left', 'turn_right', 'blink', 'move_closer'] as const;
export type ChallengeType = (typeof CHALLENGE_TYPES)[number];

export interface Challenge {
  id: string;
  type: ChallengeType;
  /** When the prompt was sent to the customer (ms, same clock as the samples). */
  issuedAt: number;
  deadline: number;
}

/** What the checker needs from one analysed frame. */
export interface LivenessSample {
  t: number;
  faceCount: number;
  yaw: number | null;
  ear: number | null;
  /** Face box width / frame width. */
  faceWidthRatio: number | null;
  /** Whether the face matched the reference in this frame (null: not known). */
  matched: boolean | null;
}

/** Measures of the largest face of a frame. */
export function livenessSample(analysis: Pick<FrameAnalysis, 'faces' | 'width'>, t: number, matched: boolean | null = null): LivenessSample {
  const { faces } = analysis;
  if (faces.length === 0) return { t, faceCount: 0, yaw: null, ear: null, faceWidthRatio: null, matched };
  const face = faces.reduce((a, b) => (area(b.box) > area(a.box) ? b : a));
  return {
    t,
    faceCount: faces.length,
    yaw: estimateYaw(face.landmarks68),
    ear: eyeAspectRatio(face.landmarks68).mean,
    faceWidthRatio: face.box.width / analysis.width,
    matched,
  };
}

function area(b: Box): number {
  return b.width * b.height;
}

export interface LivenessConfig {
  /** A turn passes when yaw moves at least this many degrees from the baseline in the asked direction... */
  turnDegrees: number;
  /** ...and the absolute yaw is at least this far in that direction. */
  turnMinAbsDegrees: number;
  /** Eyes count as closed at EAR ≤ min(closedEar, baseline × closedRatio)... */
  closedEar: number;
  closedRatio: number;
  /** ...and as open again at EAR ≥ baseline × reopenRatio. */
  reopenRatio: number;
  /** Move closer passes when the face width grows by this factor over the baseline. */
  closerFactor: number;
  /** Frames this long before the prompt (up to `reactionMs` after it) form the baseline. */
  baselineMs: number;
  /** Nobody reacts faster than this: frames within it still count as baseline. */
  reactionMs: number;
  /** Frames that must satisfy the challenge (consecutive among counted frames). */
  minFrames: number;
  /** Default time the customer has per challenge. */
  timeoutMs: number;
}

/**
 * Defaults. Yaw limits: landmarks of real frontal faces measure within about ±12° with this
 * estimator, a clear head turn gives 25–45°. EAR: open eyes on the real face photos measure
 * 0.22–0.36; face-api's landmark model rarely closes the eye contour completely, so "closed"
 * is relative to the person's own open-eye baseline.
 * Blinks last 100–400 ms: at the default 2 frames/s tap most blinks fall between frames, so
 * the blink challenge asks to "close your eyes for a moment" and the tap should run at ≥ 8
 * frames/s while a challenge is open.
 */
export const DEFAULT_LIVENESS_CONFIG: Readonly<LivenessConfig> = Object.freeze({
  turnDegrees: 20,
  turnMinAbsDegrees: 15,
  closedEar: 0.2,
  closedRatio: 0.7,
  reopenRatio: 0.85,
  closerFactor: 1.25,
  baselineMs: 2000,
  reactionMs: 250,
  minFrames: 1,
  timeoutMs: 8000,
});

export type ChallengeStatus = 'pending' | 'passed' | 'failed';

export interface ChallengeResult {
  challengeId: string;
  type: ChallengeType;
  status: ChallengeStatus;
  /** Why it failed or is still pending; 'ok' when passed. */
  reason: 'ok' | 'waiting' | 'no_baseline' | 'not_performed' | 'face_lost' | 'identity_mismatch';
  /** Baseline measure (yaw °, EAR, or face width ratio). */
  baseline: number | null;
  /** The most extreme measure seen in the asked direction. */
  peak: number | null;
  /** Frames checked after the prompt. */
  frames: number;
  /** ms from the prompt to passing. */
  passedAfterMs: number | null;
}

/** A single-face frame whose identity was not contradicted counts. */
function counts(s: LivenessSample): boolean {
  return s.faceCount === 1 && s.matched !== false;
}

/**
 * Checks one challenge against the frames seen so far (any order; only frames from
 * `issuedAt − baselineMs` to the deadline are used). Pending until it passes or `now` is past
 * the deadline. Identity binding: frames where the face did not match the reference never
 * count, so someone else cannot perform the challenge.
 */
export function evaluateChallenge(
  challenge: Challenge,
  samples: readonly LivenessSample[],
  now: number,
  cfg: LivenessConfig = DEFAULT_LIVENESS_CONFIG,
): ChallengeResult {
  const sorted = [...samples].sort((a, b) => a.t - b.t);
  const base: ChallengeResult = {
    challengeId: challenge.id,
    type: challenge.type,
    status: 'pending',
    reason: 'waiting',
    baseline: null,
    peak: null,
    frames: 0,
    passedAfterMs: null,
  };
  const measure = (s: LivenessSample): number | null =>
    challenge.type === 'blink' ? s.ear : challenge.type === 'move_closer' ? s.faceWidthRatio : s.yaw;

  // Baseline: counted frames shortly before the prompt (and within the reaction time after it);
  // failing that, the first counted frame after the prompt.
  const reactionEnd = challenge.issuedAt + cfg.reactionMs;
  let baselineFrames = sorted.filter((s) => counts(s) && measure(s) !== null && s.t >= challenge.issuedAt - cfg.baselineMs && s.t <= reactionEnd);
  let after = sorted.filter((s) => s.t > reactionEnd && s.t <= challenge.deadline);
  if (baselineFrames.length === 0) {
    const first = after.find((s) => counts(s) && measure(s) !== null);
    if (first) {
      baselineFrames = [first];
      after = after.filter((s) => s.t > first.t);
    }
  }
  const expired = now > challenge.deadline;
  if (baselineFrames.length === 0) {
    return { ...base, status: expired ? 'failed' : 'pending', reason: expired ? 'no_baseline' : 'waiting', frames: after.length };
  }
  const baseline = medianOf(baselineFrames.map((s) => measure(s)!));
  const counted = after.filter((s) => counts(s) && measure(s) !== null);
  const result: ChallengeResult = { ...base, baseline, frames: after.length };

  let passedAt: number | null = null;
  let peak: number | null = null;
  let run = 0;
  const hit = (ok: boolean, s: LivenessSample) => {
    run = ok ? run + 1 : 0;
    if (run >= cfg.minFrames && passedAt === null) passedAt = s.t;
  };
  switch (challenge.type) {
    case 'turn_left':
    case 'turn_right': {
      const sign = challenge.type === 'turn_left' ? 1 : -1;
      for (const s of counted) {
        const v = s.yaw! * sign;
        peak = peak === null ? v : Math.max(peak, v);
        hit(v - baseline * sign >= cfg.turnDegrees && v >= cfg.turnMinAbsDegrees, s);
      }
      if (peak !== null) peak *= sign;
      break;
    }
    case 'move_closer': {
      for (const s of counted) {
        peak = peak === null ? s.faceWidthRatio! : Math.max(peak, s.faceWidthRatio!);
        hit(s.faceWidthRatio! >= baseline * cfg.closerFactor, s);
      }
      break;
    }
    case 'blink': {
      // open (baseline) → closed → open again.
      const closedAt = Math.min(cfg.closedEar, baseline * cfg.closedRatio);
      let closedSeen = 0;
      for (const s of counted) {
        peak = peak === null ? s.ear! : Math.min(peak, s.ear!);
        if (s.ear! <= closedAt) closedSeen++;
        else if (closedSeen >= cfg.minFrames && s.ear! >= baseline * cfg.reopenRatio && passedAt === null) passedAt = s.t;
      }
      break;
    }
  }
  result.peak = peak;
  if (passedAt !== null) return { ...result, status: 'passed', reason: 'ok', passedAfterMs: passedAt - challenge.issuedAt };
  if (!expired) return { ...result, status: 'pending', reason: 'waiting' };
  const reason =
    counted.length > 0
      ? 'not_performed'
      : after.some((s) => s.faceCount === 1 && s.matched === false)
        ? 'identity_mismatch'
        : 'face_lost';
  return { ...result, status: 'failed', reason };
}

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * `count` challenge types in random order from a CSPRNG, without repeats while possible, and
 * always at least one head turn (the strongest signal against a flat photo).
 */
export function pickChallenges(count: number, rand: (maxExclusive: number) => number = randomInt): ChallengeType[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('count must be a positive integer');
  const out: ChallengeType[] = [];
  let pool: ChallengeType[] = [];
  while (out.length < count) {
    if (pool.length === 0) pool = [...CHALLENGE_TYPES];
    out.push(pool.splice(rand(pool.length), 1)[0]!);
  }
  if (!out.some((t) => t === 'turn_left' || t === 'turn_right')) {
    out[rand(out.length)] = rand(2) === 0 ? 'turn_left' : 'turn_right';
  }
  return out;
}

export interface LivenessSummary {
  status: 'passed' | 'failed' | 'pending';
  passed: number;
  failed: number;
  pending: number;
}

/** Overall: passed when at least `required` challenges were issued and all of them passed. */
export function summarizeLiveness(results: readonly ChallengeResult[], required = 2): LivenessSummary {
  const passed = results.filter((r) => r.status === 'passed').length;
  const failed = results.filter((r) => r.status === 'failed').length;
  const pending = results.length - passed - failed;
  const status = failed > 0 ? 'failed' : pending > 0 || passed < required ? 'pending' : 'passed';
  return { status, passed, failed, pending };
}

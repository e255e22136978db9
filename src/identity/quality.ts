/**
 * Capture quality: is the picture good enough to identify someone on it?
 *
 * Two layers:
 * - raster measures (frameStats, faceRegionStats) run in the engine's workers beside the
 *   detector, on the full frame, and travel back as a few numbers plus a 64×48 luma thumbnail;
 * - the assessment (assessFrameQuality, QualityTracker) is pure and runs on the event loop.
 *
 * Each frame gets issues; each issue has a guidance code for the customer's page and a reason
 * for the teller. Video-identification rules require the identification to be aborted on
 * inadequate picture quality, so QualityTracker.status() says whether approval is allowed:
 * at least `minAdequate` of the last `windowFrames` frames (none older than `maxAgeMs`) must
 * be adequate. A call that never reaches that, or falls below it, cannot be approved.
 */
import { resizeRgb, toLuma, type RgbImage } from './image.ts';
import type { Box, FrameAnalysis, FrameStats } from './types.ts';
import { THUMB_HEIGHT, THUMB_WIDTH } from './types.ts';

// ---------------------------------------------------------------------------------------------
// Raster measures (worker side; pure, no I/O)

export function frameStats(img: RgbImage): FrameStats {
  const luma = toLuma(img);
  let sum = 0;
  for (let i = 0; i < luma.length; i++) sum += luma[i]!;
  const thumb = toLuma(resizeRgb(img, THUMB_WIDTH, THUMB_HEIGHT));
  return { meanLuma: sum / Math.max(1, luma.length), thumb };
}

/** Side of the square the face box is resampled to before measuring sharpness. */
export const SHARPNESS_SIDE = 112;

/**
 * Mean luma and sharpness of a face box. The box is resampled to 112×112 first, so sharpness
 * does not depend on how large the face is in the frame, and sharpness is the variance of the
 * Laplacian relative to the variance of the luma (×100), so it does not depend on exposure
 * either (darkening a face by half changes it by < 10%; measured on the 22 real faces).
 */
export function faceRegionStats(img: RgbImage, box: Box): { luma: number; sharpness: number } {
  const x0 = Math.max(0, Math.floor(box.x));
  const y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(img.width, Math.ceil(box.x + box.width));
  const y1 = Math.min(img.height, Math.ceil(box.y + box.height));
  const w = x1 - x0;
  const h = y1 - y0;
  if (w < 2 || h < 2) return { luma: 0, sharpness: 0 };
  const crop = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const s = ((y0 + y) * img.width + x0) * 3;
    crop.set(img.data.subarray(s, s + w * 3), y * w * 3);
  }
  const small = toLuma(resizeRgb({ data: crop, width: w, height: h }, SHARPNESS_SIDE, SHARPNESS_SIDE));
  let sum = 0;
  let sumSq = 0;
  for (let i = 0; i < small.length; i++) {
    sum += small[i]!;
    sumSq += small[i]! * small[i]!;
  }
  const mean = sum / small.length;
  const variance = Math.max(1, sumSq / small.length - mean * mean);
  return { luma: mean, sharpness: (100 * laplacianVariance(small, SHARPNESS_SIDE, SHARPNESS_SIDE)) / variance };
}

/** Variance of the 4-neighbour Laplacian over the interior of a luma plane. */
export function laplacianVariance(luma: ArrayLike<number>, width: number, height: number): number {
  let n = 0;
  let sum = 0;
  let sumSq = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const v = luma[i - width]! + luma[i + width]! + luma[i - 1]! + luma[i + 1]! - 4 * luma[i]!;
      sum += v;
      sumSq += v * v;
      n++;
    }
  }
  if (n === 0) return 0;
  const mean = sum / n;
  return sumSq / n - mean * mean;
}

/** Mean absolute difference of two thumbnails of the same size, in luma levels. */
export function thumbDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length || a.length === 0) return Number.POSITIVE_INFINITY;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

// ---------------------------------------------------------------------------------------------
// Assessment (pure)

export const QUALITY_ISSUES = [
  'no_face',
  'multiple_faces',
  'too_dark',
  'too_bright',
  'blurred',
  'face_too_small',
  'face_cut_off',
  'frozen',
] as const;
export type QualityIssue = (typeof QUALITY_ISSUES)[number];

/** What the customer's page shows (it maps each code to a localized sentence). */
export const GUIDANCE_CODES = [
  'show_your_face',
  'only_you_in_picture',
  'more_light',
  'less_light',
  'hold_still_clean_lens',
  'move_closer',
  'center_your_face',
  'check_your_camera',
] as const;
export type GuidanceCode = (typeof GUIDANCE_CODES)[number];

export const ISSUE_GUIDANCE: Readonly<Record<QualityIssue, { customer: GuidanceCode; teller: string }>> = {
  no_face: { customer: 'show_your_face', teller: 'no face in the picture' },
  multiple_faces: { customer: 'only_you_in_picture', teller: 'more than one face in the picture' },
  too_dark: { customer: 'more_light', teller: 'face too dark' },
  too_bright: { customer: 'less_light', teller: 'face overexposed' },
  blurred: { customer: 'hold_still_clean_lens', teller: 'picture blurred (motion or focus)' },
  face_too_small: { customer: 'move_closer', teller: 'face too small in the frame' },
  face_cut_off: { customer: 'center_your_face', teller: 'face cut off at the edge of the frame' },
  frozen: { customer: 'check_your_camera', teller: 'video frozen (frames do not change)' },
};

/** Issues that make a frame unusable for identification. All of them, currently. */
const INADEQUATE: ReadonlySet<QualityIssue> = new Set(QUALITY_ISSUES);

export interface QualityConfig {
  /** Face box mean luma below this is too dark. */
  minFaceLuma: number;
  /** Face box mean luma above this is overexposed. */
  maxFaceLuma: number;
  /** Sharpness (faceRegionStats) below this is blurred. */
  minSharpness: number;
  /** Face box width as a fraction of the frame width below this is too small... */
  minFaceWidthRatio: number;
  /** ...and in absolute pixels (the recognition net works on 150×150 crops). */
  minFacePixels: number;
  /** A face box reaching closer than this fraction of its own size to an edge is cut off. */
  edgeMarginRatio: number;
  /** Mean absolute thumbnail difference (luma levels) under which two frames count as identical. */
  frozenMaxDifference: number;
  /** Consecutive identical frames after which the video counts as frozen. */
  frozenFrames: number;
  /** Rolling window for the approval rule. */
  windowFrames: number;
  minAdequate: number;
  /** Frames older than this no longer count (the stream stopped). */
  maxAgeMs: number;
}

/**
 * Defaults, from the 22 real faces of the face-api demo photos (crops at their original
 * quality; test/unit/identity/quality.test.ts checks the same numbers):
 * - sharpness: originals 2.5–24 (median 9.6; the softest are faces of a soft group photo);
 *   box blur radius 3 → 0.5–2.8 (median 1.6), radius 4 → 0.4–1.6. Limit 2.0.
 * - face luma: originals 61–161; the same faces at ×0.35 exposure 21–57. Faces at ×0.6 still
 *   matched themselves (distances ≤ 0.23, bench distances). Limit 40, set low on purpose: mean
 *   luma also depends on skin tone, and a "too dark" verdict must not fall on darker skin in
 *   normal light. Overexposed: over 225 (a face at ×1.8 reaches 233 and loses its detail).
 * - size: the recognition net works on 150 px crops; under 80 px a face is upscaled a lot.
 */
export const DEFAULT_QUALITY_CONFIG: Readonly<QualityConfig> = Object.freeze({
  minFaceLuma: 40,
  maxFaceLuma: 225,
  minSharpness: 2,
  minFaceWidthRatio: 0.15,
  minFacePixels: 80,
  edgeMarginRatio: 0.02,
  frozenMaxDifference: 0.25,
  frozenFrames: 6,
  windowFrames: 10,
  minAdequate: 6,
  maxAgeMs: 10_000,
});

export interface FrameQuality {
  adequate: boolean;
  issues: QualityIssue[];
  /** Guidance codes for the customer, most important first, without duplicates. */
  guidance: GuidanceCode[];
  /** Reasons for the teller, in the order of `issues`. */
  reasons: string[];
}

/**
 * One frame's quality. `frozen` is decided by the caller from the frame history
 * (QualityTracker does it). Face measures are taken on the largest face.
 */
export function assessFrameQuality(
  analysis: Pick<FrameAnalysis, 'width' | 'height' | 'faces'>,
  frozen: boolean,
  cfg: QualityConfig = DEFAULT_QUALITY_CONFIG,
): FrameQuality {
  const issues: QualityIssue[] = [];
  if (frozen) issues.push('frozen');
  const { faces, width, height } = analysis;
  if (faces.length === 0) issues.push('no_face');
  else {
    if (faces.length > 1) issues.push('multiple_faces');
    const face = faces.reduce((a, b) => (b.box.width * b.box.height > a.box.width * a.box.height ? b : a));
    const { box } = face;
    if (box.width < cfg.minFacePixels || box.width < cfg.minFaceWidthRatio * width) issues.push('face_too_small');
    const m = cfg.edgeMarginRatio * Math.max(box.width, box.height);
    if (box.x < m || box.y < m || box.x + box.width > width - m || box.y + box.height > height - m) {
      issues.push('face_cut_off');
    }
    if (face.luma < cfg.minFaceLuma) issues.push('too_dark');
    else if (face.luma > cfg.maxFaceLuma) issues.push('too_bright');
    if (face.sharpness < cfg.minSharpness) issues.push('blurred');
  }
  const guidance = [...new Set(issues.map((i) => ISSUE_GUIDANCE[i].customer))];
  return {
    adequate: !issues.some((i) => INADEQUATE.has(i)),
    issues,
    guidance,
    reasons: issues.map((i) => ISSUE_GUIDANCE[i].teller),
  };
}

export interface QualityStatus {
  /** False while the rule below is not met: the teller's approve button stays disabled. */
  approvalAllowed: boolean;
  adequateFrames: number;
  framesInWindow: number;
  /** Most frequent issues in the window, for the teller ("why not"). */
  topIssues: { issue: QualityIssue; frames: number }[];
}

/** Per-call quality history: frozen detection and the approval rule. */
export class QualityTracker {
  private readonly window: { t: number; adequate: boolean; issues: QualityIssue[] }[] = [];
  private previousThumb: Uint8Array | null = null;
  private identicalRun = 0;

  constructor(private readonly cfg: QualityConfig = DEFAULT_QUALITY_CONFIG) {}

  /** Assess the next frame of the call, taken at time `t` (ms). */
  push(analysis: FrameAnalysis, t: number): FrameQuality {
    const thumb = analysis.stats.thumb;
    if (this.previousThumb && thumbDifference(this.previousThumb, thumb) <= this.cfg.frozenMaxDifference) {
      this.identicalRun++;
    } else {
      this.identicalRun = 0;
    }
    this.previousThumb = thumb;
    const q = assessFrameQuality(analysis, this.identicalRun >= this.cfg.frozenFrames - 1, this.cfg);
    this.window.push({ t, adequate: q.adequate, issues: q.issues });
    while (this.window.length > this.cfg.windowFrames) this.window.shift();
    return q;
  }

  status(now: number): QualityStatus {
    const recent = this.window.filter((f) => now - f.t <= this.cfg.maxAgeMs);
    const adequateFrames = recent.filter((f) => f.adequate).length;
    const counts = new Map<QualityIssue, number>();
    for (const f of recent) for (const i of f.issues) counts.set(i, (counts.get(i) ?? 0) + 1);
    return {
      approvalAllowed: adequateFrames >= this.cfg.minAdequate,
      adequateFrames,
      framesInWindow: recent.length,
      topIssues: [...counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .map(([issue, frames]) => ({ issue, frames })),
    };
  }
}

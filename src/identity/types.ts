/**
 * Data shapes shared by the engine, its workers and the pure checks (scoring, liveness,
 * quality, evidence). Coordinates are pixels of the analysed image, origin top-left.
 */

/** Face detectors the engine can run. See engine.ts for the measured trade-off. */
export const DETECTORS = ['tiny', 'ssd'] as const;
export type Detector = (typeof DETECTORS)[number];

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Point {
  x: number;
  y: number;
}

export interface FaceObservation {
  box: Box;
  /** Detector confidence, 0..1. */
  score: number;
  /** The 68 iBUG landmarks (jaw 0–16, brows 17–26, nose 27–35, eyes 36–47, mouth 48–67). */
  landmarks68: Point[];
  /** 128-d face descriptor (dlib's ResNet face embedding as ported by face-api), computed on an upright aligned chip. */
  descriptor: Float32Array;
  /** Mean Rec.601 luma of the face box, 0..255. */
  luma: number;
  /** 100 × var(Laplacian) / var(luma) of the face box resampled to 112×112 (higher = sharper; see quality.ts). */
  sharpness: number;
}

/** Whole-frame measures the quality checks need, computed in the worker with the analysis. */
export interface FrameStats {
  /** Mean luma of the whole frame, 0..255. */
  meanLuma: number;
  /**
   * A THUMB_WIDTH × THUMB_HEIGHT luma thumbnail (area-averaged), only for frozen-video detection
   * by frame difference. Held in memory for one frame; never logged, never stored.
   */
  thumb: Uint8Array;
}

export const THUMB_WIDTH = 64;
export const THUMB_HEIGHT = 48;

export interface FrameAnalysis {
  /** Size of the image as submitted (face coordinates are in this space). */
  width: number;
  height: number;
  detector: Detector;
  /** Faces found, highest detection score first. */
  faces: FaceObservation[];
  stats: FrameStats;
  /** Time spent in the worker on this frame (decode if any, detection, landmarks, descriptors), ms. */
  ms: number;
}

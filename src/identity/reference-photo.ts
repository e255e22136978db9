/**
 * The registered ID photo the bank attaches to a session: exactly one clearly visible face,
 * whose descriptor every live frame is compared with.
 *
 * Errors are typed so the HTTP layer can map them without parsing messages:
 *   ImageError          (image.ts)  → 413 for too_large, 415 for unsupported_type, else 422
 *   ReferencePhotoError (here)      → 422
 * The photo bytes are never logged; store them with BlobStore.put and keep only the SHA-256.
 */
import { createHash } from 'node:crypto';
import type { FaceEngine } from './engine.ts';
import type { ImageFormat } from './image.ts';
import { estimateYaw } from './liveness.ts';
import type { Box } from './types.ts';

export const REFERENCE_ERROR_CODES = ['no_face', 'multiple_faces', 'face_too_small', 'low_confidence', 'face_turned'] as const;
export type ReferenceErrorCode = (typeof REFERENCE_ERROR_CODES)[number];

export class ReferencePhotoError extends Error {
  constructor(
    readonly code: ReferenceErrorCode,
    message: string,
    /** Faces found (score ≥ the engine's minScore). */
    readonly faceCount: number,
  ) {
    super(message);
    this.name = 'ReferencePhotoError';
  }
}

export interface ReferencePhoto {
  /** SHA-256 of the uploaded bytes, lower-case hex: the photo's name in the blob store and the evidence. */
  sha256: string;
  format: ImageFormat;
  /** Size of the photo (after EXIF orientation). */
  width: number;
  height: number;
  descriptor: Float32Array;
  detectionScore: number;
  box: Box;
  /** What the evidence records about how good a reference this is. */
  quality: { faceWidthPx: number; yaw: number; sharpness: number; luma: number };
  /** Detector and library versions that produced the descriptor. */
  model: { detector: string; faceApi: string; tfjs: string };
}

export interface ReferenceOptions {
  /** The face box must be at least this wide in the photo (the recognition net sees 150×150). */
  minFaceWidth: number;
  /** The single face must be detected at least this confidently. */
  minScore: number;
  /** Reject near-profiles: |yaw| above this (degrees, landmark estimate). */
  maxYaw: number;
}

export const DEFAULT_REFERENCE_OPTIONS: Readonly<ReferenceOptions> = Object.freeze({
  minFaceWidth: 80,
  minScore: 0.6,
  maxYaw: 45,
});

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Decode (in a worker), find faces with the upload detector, require exactly one usable face.
 * Rejects with ImageError for a bad upload and ReferencePhotoError for a bad photo.
 */
export async function extractReference(
  engine: FaceEngine,
  bytes: Uint8Array,
  options: Partial<ReferenceOptions> = {},
): Promise<ReferencePhoto> {
  const opts = { ...DEFAULT_REFERENCE_OPTIONS, ...options };
  const analysis = await engine.analyzeEncoded(bytes);
  const n = analysis.faces.length;
  if (n === 0) throw new ReferencePhotoError('no_face', 'no face found in the reference photo', 0);
  if (n > 1) throw new ReferencePhotoError('multiple_faces', `${n} faces found in the reference photo; exactly one is required`, n);
  const face = analysis.faces[0]!;
  if (face.score < opts.minScore) {
    throw new ReferencePhotoError('low_confidence', `the face is detected with confidence ${face.score.toFixed(2)}, under ${opts.minScore}`, 1);
  }
  if (face.box.width < opts.minFaceWidth) {
    throw new ReferencePhotoError('face_too_small', `the face is ${Math.round(face.box.width)} px wide; at least ${opts.minFaceWidth} px are needed`, 1);
  }
  const yaw = estimateYaw(face.landmarks68);
  if (Math.abs(yaw) > opts.maxYaw) {
    throw new ReferencePhotoError('face_turned', `the face is turned about ${Math.round(Math.abs(yaw))}° away from the camera; a frontal photo is required`, 1);
  }
  const info = engine.info;
  return {
    sha256: sha256Hex(bytes),
    format: analysis.format,
    width: analysis.width,
    height: analysis.height,
    descriptor: face.descriptor,
    detectionScore: face.score,
    box: face.box,
    quality: { faceWidthPx: face.box.width, yaw, sharpness: face.sharpness, luma: face.luma },
    model: { detector: analysis.detector, faceApi: info.faceApi, tfjs: info.tfjs },
  };
}

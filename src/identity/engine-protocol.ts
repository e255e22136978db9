/**
 * Messages between the engine (main thread) and its worker threads. Internal to src/identity.
 */
import type { ImageErrorCode, ImageLimits } from './image.ts';
import type { Detector, FrameAnalysis } from './types.ts';

export interface WorkerInit {
  /** Folder with face-api's model manifests and weights; default: the package's model/. */
  modelDir?: string;
  /** Lets tests crash a worker on purpose ({ type: 'crash' }). */
  testHooks?: boolean;
}

export interface AnalyzeOptions {
  /** Detection confidence floor. */
  minScore: number;
  /** At most this many faces (highest scores) get landmarks and descriptors. */
  maxFaces: number;
  /** TinyFaceDetector input size (multiple of 32). */
  tinyInputSize: number;
  /** Images with a longer side are downscaled before analysis (coordinates are mapped back). */
  maxSide?: number;
}

export type WorkerRequest =
  | {
      type: 'analyze';
      id: number;
      detector: Detector;
      options: AnalyzeOptions;
      rgb: ArrayBuffer;
      width: number;
      height: number;
    }
  | {
      type: 'analyzeEncoded';
      id: number;
      detector: Detector;
      options: AnalyzeOptions;
      bytes: ArrayBuffer;
      limits: ImageLimits;
    }
  | { type: 'crash' };

export interface WorkerInfo {
  backend: string;
  simd: boolean;
  tfjs: string;
  faceApi: string;
  loadMs: number;
}

export type WorkerError =
  | { kind: 'image'; code: ImageErrorCode; message: string }
  | { kind: 'engine'; code: 'analysis_failed'; message: string };

export type WorkerReply =
  | { type: 'ready'; info: WorkerInfo }
  | { type: 'fatal'; message: string }
  | { type: 'result'; id: number; ok: true; analysis: FrameAnalysis }
  | { type: 'result'; id: number; ok: false; error: WorkerError };

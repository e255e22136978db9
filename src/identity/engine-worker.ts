/**
 * One face-analysis worker thread: face-api on the tfjs WASM backend (SIMD, single-threaded),
 * models loaded once at start. Receives frames (packed RGB) or encoded images, answers with
 * FrameAnalysis. Spawned only by engine.ts; the messages are declared in engine-protocol.ts.
 *
 * Image bytes never leave this thread except as the small luma thumbnail in FrameStats, and
 * are never logged: errors carry codes and short messages only.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type * as FaceApi from '@vladmandic/face-api';
import { decodeImage, fitWithin, ImageError, type RgbImage } from './image.ts';
import { faceRegionStats, frameStats } from './quality.ts';
import { uprightFaceChip } from './align.ts';
import type { Detector, FaceObservation, FrameAnalysis } from './types.ts';
import type { AnalyzeOptions, WorkerInit, WorkerReply, WorkerRequest } from './engine-protocol.ts';

const require = createRequire(import.meta.url);

type Tf = typeof import('@tensorflow/tfjs');
type TfWasm = typeof import('@tensorflow/tfjs-backend-wasm');

const port = parentPort;
if (!port) throw new Error('engine-worker.ts must run in a worker thread');
const init = workerData as WorkerInit;

function send(msg: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

async function load(): Promise<{ tf: Tf; faceapi: typeof FaceApi }> {
  const t0 = performance.now();
  const tf = require('@tensorflow/tfjs') as Tf;
  const wasm = require('@tensorflow/tfjs-backend-wasm') as TfWasm;
  // The node-wasm bundle requires the same @tensorflow/tfjs and backend instances as above.
  const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js') as typeof FaceApi;
  const wasmDir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  wasm.setWasmPaths(wasmDir + path.sep);
  await tf.setBackend('wasm');
  await tf.ready();
  const modelDir = init.modelDir ?? path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await Promise.all([
    faceapi.nets.tinyFaceDetector.loadFromDisk(modelDir),
    faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir),
    faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir),
    faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir),
  ]);
  send({
    type: 'ready',
    info: {
      backend: tf.getBackend(),
      simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')),
      tfjs: tf.version.tfjs,
      faceApi: faceapi.version,
      loadMs: Math.round(performance.now() - t0),
    },
  });
  return { tf, faceapi };
}

type RawFace = Omit<FaceObservation, 'luma' | 'sharpness'>;

async function detect(tf: Tf, faceapi: typeof FaceApi, img: RgbImage, detector: Detector, opts: AnalyzeOptions): Promise<RawFace[]> {
  const input = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
  let results;
  try {
    const options =
      detector === 'ssd'
        ? new faceapi.SsdMobilenetv1Options({ minConfidence: opts.minScore, maxResults: opts.maxFaces })
        : new faceapi.TinyFaceDetectorOptions({ inputSize: opts.tinyInputSize, scoreThreshold: opts.minScore });
    // face-api's TNetInput type names its own bundled tf.Tensor3D; the runtime object is the same.
    results = await faceapi.detectAllFaces(input as unknown as FaceApi.tf.Tensor3D, options).withFaceLandmarks();
  } finally {
    input.dispose();
  }
  const faces: RawFace[] = [];
  for (const r of results.sort((a, b) => b.detection.score - a.detection.score).slice(0, opts.maxFaces)) {
    const b = r.detection.box;
    const landmarks68 = r.landmarks.positions.map((p) => ({ x: p.x, y: p.y }));
    const chip = uprightFaceChip(img, landmarks68);
    const t = tf.tensor3d(chip.data, [chip.height, chip.width, 3], 'int32');
    let d: Float32Array | Float32Array[];
    try {
      d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(t as unknown as FaceApi.tf.Tensor3D);
    } finally {
      t.dispose();
    }
    faces.push({
      box: { x: b.x, y: b.y, width: b.width, height: b.height },
      score: r.detection.score,
      landmarks68,
      // A copy with its own buffer, so it can be transferred to the main thread.
      descriptor: new Float32Array(Array.isArray(d) ? d[0]! : d),
    });
  }
  return faces;
}

/** Grey border of `fraction` × the longest side on every side. */
function pad(img: RgbImage, fraction: number): { image: RgbImage; offset: number } {
  const p = Math.round(Math.max(img.width, img.height) * fraction);
  const w = img.width + 2 * p;
  const h = img.height + 2 * p;
  const data = new Uint8Array(w * h * 3).fill(128);
  for (let y = 0; y < img.height; y++) {
    data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), ((y + p) * w + p) * 3);
  }
  return { image: { data, width: w, height: h }, offset: p };
}

function iou(a: RawFace['box'], b: RawFace['box']): number {
  const x0 = Math.max(a.x, b.x);
  const y0 = Math.max(a.y, b.y);
  const x1 = Math.min(a.x + a.width, b.x + b.width);
  const y1 = Math.min(a.y + a.height, b.y + b.height);
  const inter = Math.max(0, x1 - x0) * Math.max(0, y1 - y0);
  return inter / (a.width * a.height + b.width * b.height - inter);
}

/**
 * Detection, landmarks, descriptors and region stats. With `padded`, detection runs a second
 * time on the image inside a grey border and the two result sets are merged (overlapping
 * boxes keep the higher score): SsdMobilenetv1 misses faces that fill most of the picture (a
 * tight ID-photo crop: 6 of 22 real face crops measured), and finds them reliably with a 25%
 * border, while the plain pass keeps small faces in wide pictures at full resolution.
 */
async function analyze(
  tf: Tf,
  faceapi: typeof FaceApi,
  img: RgbImage,
  detector: Detector,
  opts: AnalyzeOptions,
  padded: boolean,
): Promise<{ faces: FaceObservation[]; stats: FrameAnalysis['stats'] }> {
  let raw = await detect(tf, faceapi, img, detector, opts);
  if (padded) {
    const { image, offset } = pad(img, 0.25);
    const more = (await detect(tf, faceapi, image, detector, opts)).map((f) => ({
      ...f,
      box: { ...f.box, x: f.box.x - offset, y: f.box.y - offset },
      landmarks68: f.landmarks68.map((p) => ({ x: p.x - offset, y: p.y - offset })),
    }));
    for (const f of more) {
      const i = raw.findIndex((r) => iou(r.box, f.box) > 0.4);
      if (i < 0) raw.push(f);
      else if (f.score > raw[i]!.score) raw[i] = f;
    }
  }
  raw = raw.sort((a, b) => b.score - a.score).slice(0, opts.maxFaces);
  const faces = raw.map((f): FaceObservation => ({ ...f, ...faceRegionStats(img, f.box) }));
  return { faces, stats: frameStats(img) };
}

function scaleFaces(faces: FaceObservation[], s: number): FaceObservation[] {
  if (s === 1) return faces;
  return faces.map((f) => ({
    ...f,
    box: { x: f.box.x * s, y: f.box.y * s, width: f.box.width * s, height: f.box.height * s },
    landmarks68: f.landmarks68.map((p) => ({ x: p.x * s, y: p.y * s })),
  }));
}

function errorReply(id: number, err: unknown): WorkerReply {
  if (err instanceof ImageError) return { type: 'result', id, ok: false, error: { kind: 'image', code: err.code, message: err.message } };
  const message = err instanceof Error ? err.message : String(err);
  return { type: 'result', id, ok: false, error: { kind: 'engine', code: 'analysis_failed', message: message.slice(0, 300) } };
}

async function main(): Promise<void> {
  let loaded: { tf: Tf; faceapi: typeof FaceApi };
  try {
    loaded = await load();
  } catch (err) {
    send({ type: 'fatal', message: `model load failed: ${err instanceof Error ? err.message : String(err)}` });
    return;
  }
  const { tf, faceapi } = loaded;
  // One job at a time: the pool never sends a second before the first is answered.
  port!.on('message', (req: WorkerRequest) => {
    void (async () => {
      if (req.type === 'crash') {
        if (init.testHooks) setImmediate(() => {
          throw new Error('engine-worker: crash requested by a test');
        });
        return;
      }
      const t0 = performance.now();
      try {
        let img: RgbImage;
        let scale = 1;
        let width: number;
        let height: number;
        if (req.type === 'analyze') {
          img = { data: new Uint8Array(req.rgb), width: req.width, height: req.height };
          width = req.width;
          height = req.height;
          if (req.options.maxSide && Math.max(width, height) > req.options.maxSide) {
            ({ image: img, scale } = fitWithin(img, req.options.maxSide));
          }
        } else {
          const decoded = decodeImage(new Uint8Array(req.bytes), req.limits);
          width = decoded.width;
          height = decoded.height;
          ({ image: img, scale } = fitWithin(decoded, req.options.maxSide ?? Number.MAX_SAFE_INTEGER));
        }
        const { faces, stats } = await analyze(tf, faceapi, img, req.detector, req.options, req.type === 'analyzeEncoded');
        const analysis: FrameAnalysis = {
          width,
          height,
          detector: req.detector,
          faces: scaleFaces(faces, scale),
          stats,
          ms: Math.round((performance.now() - t0) * 10) / 10,
        };
        send({ type: 'result', id: req.id, ok: true, analysis }, [
          ...analysis.faces.map((f) => f.descriptor.buffer as ArrayBuffer),
          stats.thumb.buffer as ArrayBuffer,
        ]);
      } catch (err) {
        send(errorReply(req.id, err));
      }
    })();
  });
}

void main();

/**
 * The ID document still: the teller captures the document the customer holds up, and the face
 * printed on it is compared with the reference photo and with the live face.
 *
 * The still is an uploaded JPEG/PNG (the teller console grabs it from the received video, or the
 * frame tap provides it encoded). It often shows two faces, the customer's and the document's:
 * when there are several, the document face is taken to be the smallest one (a document
 * portrait is a few centimetres tall, the customer's face is closer to the camera and larger).
 * The teller sees the distances and decides; nothing here approves anything.
 */
import type { FaceEngine } from './engine.ts';
import type { ImageFormat } from './image.ts';
import { sha256Hex } from './reference-photo.ts';
import { DEFAULT_MATCH_CONFIG, euclideanDistance } from './scoring.ts';

export interface DocumentCapture {
  sha256: string;
  format: ImageFormat;
  width: number;
  height: number;
  faceCount: number;
  documentFace: {
    detectionScore: number;
    distanceToReference: number;
    matchesReference: boolean;
    distanceToLive: number | null;
    matchesLive: boolean | null;
  } | null;
}

export async function assessDocumentCapture(
  engine: FaceEngine,
  bytes: Uint8Array,
  reference: ArrayLike<number>,
  live: ArrayLike<number> | null = null,
  threshold = DEFAULT_MATCH_CONFIG.threshold,
): Promise<DocumentCapture> {
  const a = await engine.analyzeEncoded(bytes);
  const face = a.faces.length === 0 ? null : a.faces.reduce((p, q) => (q.box.width * q.box.height < p.box.width * p.box.height ? q : p));
  let documentFace: DocumentCapture['documentFace'] = null;
  if (face) {
    const dRef = euclideanDistance(face.descriptor, reference);
    const dLive = live ? euclideanDistance(face.descriptor, live) : null;
    documentFace = {
      detectionScore: face.score,
      distanceToReference: dRef,
      matchesReference: dRef <= threshold,
      distanceToLive: dLive,
      matchesLive: dLive === null ? null : dLive <= threshold,
    };
  }
  return { sha256: sha256Hex(bytes), format: a.format, width: a.width, height: a.height, faceCount: a.faces.length, documentFace };
}

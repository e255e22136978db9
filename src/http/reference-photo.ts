/**
 * The registered ID photo the bank's system attaches to a session, and the intake both ways of
 * sending it share (`PUT /api/sessions/:id/reference-photo` with the raw bytes here, and the
 * optional base64 `referencePhoto` of `POST /api/sessions`):
 *
 *   probe (type sniffed from the bytes, size and header limits, on the event loop)
 *   → extractReference in the identity engine (exactly one usable face)
 *   → BlobStore.put (the photo is kept under its SHA-256)
 *   → the session's `reference` → `identity.reference_photo` evidence (hashes and scores only).
 *
 * The photo's bytes are never logged or put in the ledger: logs carry the session id and the
 * SHA-256. Errors map to HTTP as src/identity/README.md says: ImageError too_large → 413,
 * unsupported_type → 415, any other ImageError and every ReferencePhotoError → 422 with the
 * specific `reason`; EngineError overloaded → 503 with Retry-After.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { SessionState } from '../../signaling/protocol.ts';
import type { ApiKeys } from '../auth/api-keys.ts';
import type { Config } from '../config.ts';
import type { EvidenceSink } from '../evidence.ts';
import { EngineError } from '../identity/engine.ts';
import { referencePhotoEntry } from '../identity/evidence.ts';
import { DEFAULT_IMAGE_LIMITS, ImageError, probeImage, type ImageLimits } from '../identity/image.ts';
import { extractReference, ReferencePhotoError, sha256Hex, type ReferencePhoto } from '../identity/reference-photo.ts';
import type { IdentityService } from '../identity/service.ts';
import type { SessionRecord, SessionReference, StateStore } from '../store/types.ts';
import { requireApiKey } from './auth.ts';
import { HttpError, parseInput } from './errors.ts';

/** A photo may be attached or replaced only before the check can have started. */
export const REFERENCE_PHOTO_STATES: readonly SessionState[] = ['created', 'queued'];

/** Seconds a client is told to wait when the engine's job queue is full. */
const OVERLOADED_RETRY_AFTER_S = 2;

/** The upload limits from the configuration (the engine decodes with the same ones). */
export function uploadLimits(config: Pick<Config, 'IDENTITY_MAX_UPLOAD_BYTES' | 'IDENTITY_MAX_UPLOAD_PIXELS'>): ImageLimits {
  return { ...DEFAULT_IMAGE_LIMITS, maxBytes: config.IDENTITY_MAX_UPLOAD_BYTES, maxPixels: config.IDENTITY_MAX_UPLOAD_PIXELS };
}

/** What the API answers about an attached photo (never the descriptor). */
export interface ReferenceSummary {
  sha256: string;
  detectionScore: number;
  width: number;
  height: number;
  quality: { faceWidthPx: number; yawDeg: number; sharpness: number; luma: number };
}

export interface ReferenceIntake {
  photo: ReferencePhoto;
  /** What the session keeps. */
  reference: SessionReference;
  summary: ReferenceSummary;
}

const r4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** Maps the identity engine's typed errors to HTTP; anything else is returned unchanged. */
export function referenceHttpError(err: unknown): unknown {
  if (err instanceof ImageError) {
    if (err.code === 'too_large') return new HttpError(413, 'too_large', err.message, { reason: err.code });
    if (err.code === 'unsupported_type') return new HttpError(415, 'bad_request', `unsupported media type: ${err.message}`, { reason: err.code });
    return new HttpError(422, 'bad_request', `the reference photo is refused (${err.code}): ${err.message}`, { reason: err.code });
  }
  if (err instanceof ReferencePhotoError) {
    return new HttpError(422, 'bad_request', `the reference photo is refused (${err.code}): ${err.message}`, { reason: err.code });
  }
  if (err instanceof EngineError && err.code === 'overloaded') {
    return new HttpError(503, 'unavailable', 'the face engine is busy; retry shortly', { reason: err.code, retryAfterS: OVERLOADED_RETRY_AFTER_S });
  }
  // The engine failed, not the photo: the same photo may well go through on a retry.
  if (err instanceof EngineError && err.code !== 'analysis_failed') {
    return new HttpError(503, 'unavailable', `the face engine is unavailable (${err.code}); retry shortly`, { reason: err.code, retryAfterS: OVERLOADED_RETRY_AFTER_S });
  }
  return err;
}

/**
 * Checks the bytes, finds the one face, stores the photo in the blob store. Throws HttpError for
 * a refused photo (see referenceHttpError). Does not touch the session: callers attach
 * `reference` and then call recordReferencePhoto.
 */
export async function intakeReferencePhoto(
  identity: IdentityService,
  bytes: Uint8Array,
  limits: ImageLimits,
  log: FastifyBaseLogger,
  sessionId: string | null,
): Promise<ReferenceIntake> {
  let photo: ReferencePhoto;
  try {
    // Headers only: refuses a wrong type or size before the engine starts or decodes anything.
    probeImage(bytes, limits);
    photo = await extractReference(await identity.engine(), bytes);
  } catch (err) {
    const mapped = referenceHttpError(err);
    if (mapped instanceof HttpError) {
      // The hash and the reason, never the bytes.
      log.info({ sessionId, photoSha256: sha256Hex(bytes), bytes: bytes.length, status: mapped.status, reason: mapped.details.reason }, 'reference photo refused');
    }
    throw mapped;
  }
  const stored = await identity.blobs.put(bytes);
  if (stored.sha256 !== photo.sha256) throw new Error('the blob store and the engine disagree on the photo digest');
  return {
    photo,
    reference: { sha256: photo.sha256, descriptor: Array.from(photo.descriptor), detectionScore: photo.detectionScore, attachedAt: Date.now() },
    summary: {
      sha256: photo.sha256,
      detectionScore: r4(photo.detectionScore),
      width: photo.width,
      height: photo.height,
      quality: { faceWidthPx: Math.round(photo.quality.faceWidthPx), yawDeg: r4(photo.quality.yaw), sharpness: r4(photo.quality.sharpness), luma: r4(photo.quality.luma) },
    },
  };
}

/** The evidence entry of an attached photo (SHA-256, scores, model; no image data). */
export async function recordReferencePhoto(evidence: EvidenceSink, sessionId: string, photo: ReferencePhoto, actor: string): Promise<void> {
  await evidence.append(referencePhotoEntry(sessionId, photo, actor));
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The `referencePhoto` field of POST /api/sessions: standard base64 of a JPEG or PNG. */
export const base64PhotoSchema = z.string().regex(BASE64, 'base64 (standard alphabet, no line breaks) of a JPEG or PNG image');

/**
 * Body limit for a JSON body that may carry the photo in base64: the photo (4/3 of its bytes)
 * plus the server's usual JSON limit for everything else.
 */
export function jsonWithPhotoBodyLimit(jsonLimit: number, limits: ImageLimits): number {
  return Math.ceil(limits.maxBytes / 3) * 4 + jsonLimit;
}

/**
 * The rest of a JSON body that carried a photo must still fit the usual JSON limit: only the
 * photo may make the body larger (413 otherwise, as for any other oversized JSON body).
 */
export function assertJsonBesidesPhoto(body: unknown, jsonLimit: number): void {
  let rest = body;
  if (body !== null && typeof body === 'object' && !Array.isArray(body) && 'referencePhoto' in body) {
    const { referencePhoto: _photo, ...others } = body as Record<string, unknown>;
    rest = others;
  }
  if ((JSON.stringify(rest) ?? '').length > jsonLimit) throw new HttpError(413, 'too_large', 'request body too large');
}

const sessionIdParams = z.object({ id: z.string().uuid() });

export interface ReferencePhotoRoutesOptions {
  store: StateStore;
  evidence: EvidenceSink;
  apiKeys: ApiKeys;
  identity: IdentityService;
  limits: ImageLimits;
}

/** PUT /api/sessions/:id/reference-photo: the raw JPEG or PNG as the body. */
export async function referencePhotoRoutes(app: FastifyInstance, opts: ReferencePhotoRoutesOptions): Promise<void> {
  const { store, evidence, identity, limits } = opts;

  // Encapsulated in this plugin: only these routes take image bodies, up to the upload limit;
  // the content is sniffed later, the header only selects this parser.
  app.addContentTypeParser(['image/jpeg', 'image/png'], { parseAs: 'buffer', bodyLimit: limits.maxBytes }, (_req, body, done) => done(null, body));

  /** The session, if it exists, belongs to the caller's API key and can take a photo now. */
  async function photoSession(req: FastifyRequest): Promise<SessionRecord> {
    const { id } = parseInput(sessionIdParams, req.params, 'session id');
    const s = await store.getSession(id);
    if (!s || s.createdBy !== req.apiKeyId) throw new HttpError(404, 'not_found', 'no such session');
    assertPhotoState(s);
    return s;
  }

  app.put(
    '/api/sessions/:id/reference-photo',
    // Authenticated and checked before the body is read: nobody makes the server buffer an
    // upload for a session that cannot take it.
    { onRequest: [requireApiKey(opts.apiKeys), async (req) => void (await photoSession(req))] },
    async (req) => {
      const { id } = await photoSession(req);
      if (!Buffer.isBuffer(req.body)) {
        throw new HttpError(415, 'bad_request', 'unsupported media type: send the photo as image/jpeg or image/png', { reason: 'unsupported_type' });
      }
      const intake = await intakeReferencePhoto(identity, req.body, limits, req.log, id);
      const actor = `api:${req.apiKeyId}`;
      let previous: SessionReference | undefined;
      // The state is checked again atomically: the photo must not change under a running check.
      await store.updateSession(id, (s) => {
        assertPhotoState(s);
        previous = s.reference;
        return { ...s, reference: intake.reference };
      });
      try {
        await recordReferencePhoto(evidence, id, intake.photo, actor);
      } catch (err) {
        // No reference without its evidence: put the earlier one back (if ours is still there).
        await store
          .updateSession(id, (s) => (s.reference?.attachedAt === intake.reference.attachedAt && s.reference.sha256 === intake.reference.sha256 ? { ...s, reference: previous } : s))
          .catch((e: unknown) => req.log.error({ err: e, sessionId: id }, 'could not restore the earlier reference photo'));
        throw err;
      }
      req.log.info({ sessionId: id, photoSha256: intake.photo.sha256, replaced: previous?.sha256 ?? null }, 'reference photo attached');
      return { sessionId: id, reference: intake.summary };
    },
  );
}

function assertPhotoState(s: SessionRecord): void {
  if (!REFERENCE_PHOTO_STATES.includes(s.state)) {
    throw new HttpError(409, 'invalid_state', `the session is ${s.state}: the reference photo can be set only while it is created or queued`);
  }
}

/**
 * The compliance replay API (compliance role only):
 *
 *   GET    /api/compliance/sessions                       list + filters (date, teller, decision, business type), paged
 *   GET    /api/compliance/sessions/:id                   the session's evidence: entries as stored with inclusion
 *                                                         proofs to one signed checkpoint, the keys, the record, the blobs
 *   GET    /api/compliance/sessions/:id/recording         the recording, HTTP Range; ?participant=customer|teller for a
 *                                                         view with that participant's tracks only (derived, not evidence)
 *   GET    /api/compliance/sessions/:id/blobs/:sha256     a photo (or the recording) the session's entries name
 *   GET    /api/compliance/sessions/:id/bundle            the evidence bundle (tar, src/ledger/bundle.ts)
 *   POST   /api/compliance/media-cookie                   puts the caller's staff token in an HttpOnly cookie for <video>
 *   DELETE /api/compliance/media-cookie                   removes it
 *
 * The list comes from the ledger (SessionIndex), never from the session store. Every request is
 * authorized by a staff JWT with the compliance role in `Authorization: Bearer`; a <video> element
 * cannot send that header, so the two media routes (recording, blobs) also accept the same JWT
 * from the HttpOnly, SameSite=Strict cookie set by POST /api/compliance/media-cookie (scoped to
 * /api/compliance/sessions). The token never goes into a URL, so never into a log line.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { businessTypeSchema } from '../../signaling/protocol.ts';
import type { StaffTokens } from '../auth/staff-tokens.ts';
import { parseRange, RecordingViewError, RecordingViews, VerifiedBlobs } from '../compliance/blob-files.ts';
import { assembleEvidence, bundleManifest, bundleStream, type EvidenceSources } from '../compliance/evidence.ts';
import { SessionIndex, type SessionSummary } from '../compliance/session-index.ts';
import type { BlobStore } from '../identity/blobs.ts';
import type { Jwks } from '../ledger/keys.ts';
import type { RecordBundle } from '../ledger/record-claims.ts';
import type { Ledger } from '../ledger/types.ts';
import type { Logger } from '../logger.ts';
import { HttpError, parseInput } from './errors.ts';

export const MEDIA_COOKIE = 'vt_compliance_media';
const COOKIE_PATH = '/api/compliance/sessions';
export const MAX_SESSIONS_PER_PAGE = 100;

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

/** A day (YYYY-MM-DD, UTC) or an instant (ISO 8601 with a zone); `end` makes a day mean its end. */
const when = (what: string, end: boolean) =>
  z
    .string()
    .max(40)
    .refine((v) => DATE_RE.test(v) || DATETIME_RE.test(v), `${what} must be a date (YYYY-MM-DD) or an ISO 8601 time with a zone`)
    .transform((v, ctx) => {
      const day = DATE_RE.exec(v);
      const ms = day ? Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]) + (end ? 1 : 0)) : Date.parse(v);
      const roundTrip = day ? new Date(Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]))).toISOString().slice(0, 10) === v : true;
      if (!Number.isFinite(ms) || !roundTrip) {
        ctx.addIssue({ code: 'custom', message: `${what} is not a real date` });
        return z.NEVER;
      }
      return ms;
    });

const count = (what: string, max: number) =>
  z
    .string()
    .regex(/^(0|[1-9]\d{0,9})$/, `${what} must be a non-negative integer without leading zeros`)
    .transform(Number)
    .refine((n) => n <= max, `${what} must be at most ${max}`);

const staffId = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'a staff id is 1 to 128 printable characters');

export const sessionListQuerySchema = z
  .object({
    from: when('from', false).optional(),
    /** Inclusive for a day (`to=2026-11-22` includes that day), exclusive for an instant. */
    to: when('to', true).optional(),
    teller: staffId.optional(),
    decision: z.enum(['approved', 'rejected', 'none']).optional(),
    businessType: businessTypeSchema.optional(),
    offset: count('offset', 1_000_000_000).default(0),
    limit: count('limit', MAX_SESSIONS_PER_PAGE).refine((n) => n >= 1, 'limit must be at least 1').default(25),
  })
  .strict()
  .refine((q) => q.from === undefined || q.to === undefined || q.from < q.to, { message: 'from must be before to', path: ['from'] });

/** Ledger session ids: the API's UUIDs, and anything else the ledger accepts without spaces or slashes. */
export const sessionParamsSchema = z.object({ id: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'not a session id') }).strict();
export const blobParamsSchema = z
  .object({ id: sessionParamsSchema.shape.id, sha256: z.string().regex(/^[0-9a-f]{64}$/, 'a blob id is 64 lower-case hex digits') })
  .strict();
export const recordingQuerySchema = z
  .object({
    participant: z.enum(['customer', 'teller']).optional(),
    /** Which recording, when a session has several (one per call); default: the last. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'sha256 is 64 lower-case hex digits').optional(),
  })
  .strict();
const noQuery = z.object({}).strict();

export interface ComplianceRoutesOptions {
  ledger: Ledger;
  keys: { jwks(): Jwks };
  blobs: BlobStore;
  staffTokens: StaffTokens;
  /** The record as issued, from the session store (the ledger holds its claims, not its JWS). */
  recordOf(sessionId: string): Promise<RecordBundle | undefined>;
  /** DATA_DIR/derived: participant views of recordings (not evidence). */
  derivedDir: string;
  /**
   * Dual control: a supervisor may watch the recording of a decision waiting for their
   * co-signature (and nothing else here). True when the session's decision awaits one.
   */
  awaitsCosign?(sessionId: string): Promise<boolean>;
  log: Logger;
  ffmpegPath?: string;
}

function cookieToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === MEDIA_COOKIE) {
      const v = part.slice(eq + 1).trim();
      return /^[A-Za-z0-9._-]{1,4096}$/.test(v) ? v : undefined;
    }
  }
  return undefined;
}

export async function complianceRoutes(app: FastifyInstance, opts: ComplianceRoutesOptions): Promise<void> {
  const index = new SessionIndex(opts.ledger, opts.log);
  const verified = new VerifiedBlobs(opts.blobs);
  const views = new RecordingViews(path.join(opts.derivedDir, 'recordings'), opts.log, opts.ffmpegPath);
  const sources: EvidenceSources = { ledger: opts.ledger, keys: opts.keys, blobs: verified, recordOf: opts.recordOf };

  /** A staff JWT with the compliance role, from the header (or, for media, the cookie). */
  const authorize = (media: boolean, supervisorMay?: (req: FastifyRequest) => Promise<boolean>) => async (req: FastifyRequest) => {
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : media && auth === undefined ? cookieToken(req.headers.cookie) : undefined;
    if (!token) throw new HttpError(401, 'unauthorized', 'a compliance staff token is required');
    const result = await opts.staffTokens.verify(token);
    if (!result.ok) throw new HttpError(401, result.error, result.error === 'token_expired' ? 'the sign-in has expired' : 'invalid staff token');
    const allowed = result.staff.role === 'compliance' || (result.staff.role === 'supervisor' && supervisorMay !== undefined && (await supervisorMay(req)));
    if (!allowed) throw new HttpError(403, 'forbidden', 'this needs the role compliance');
    req.staff = result.staff;
  };
  const api = { onRequest: authorize(false) };
  const media = { onRequest: authorize(true) };
  const recordingMedia = {
    onRequest: authorize(true, async (req) => {
      const id = sessionParamsSchema.safeParse(req.params);
      return id.success && opts.awaitsCosign !== undefined && (await opts.awaitsCosign(id.data.id));
    }),
  };

  async function sessionOr404(id: string): Promise<{ summary: SessionSummary; indexes: readonly number[] }> {
    await index.refresh();
    const s = index.get(id);
    if (!s) throw new HttpError(404, 'not_found', 'no session with this id in the ledger');
    return s;
  }

  app.post('/api/compliance/media-cookie', api, async (req, reply) => {
    parseInput(noQuery, req.query, 'query');
    const token = req.headers.authorization!.slice(7);
    const secure = req.protocol === 'https' ? '; Secure' : '';
    // A session cookie: the JWT inside expires on its own.
    return reply
      .header('set-cookie', `${MEDIA_COOKIE}=${token}; Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict${secure}`)
      .header('cache-control', 'no-store')
      .code(204)
      .send();
  });

  app.delete('/api/compliance/media-cookie', api, async (req, reply) => {
    parseInput(noQuery, req.query, 'query');
    return reply.header('set-cookie', `${MEDIA_COOKIE}=; Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0`).code(204).send();
  });

  app.get('/api/compliance/sessions', api, async (req, reply) => {
    const q = parseInput(sessionListQuerySchema, req.query, 'query');
    await index.refresh();
    const { total, sessions } = index.query(
      {
        ...(q.from !== undefined ? { from: q.from } : {}),
        ...(q.to !== undefined ? { to: q.to } : {}),
        ...(q.teller !== undefined ? { teller: q.teller } : {}),
        ...(q.decision !== undefined ? { decision: q.decision } : {}),
        ...(q.businessType !== undefined ? { businessType: q.businessType } : {}),
      },
      { offset: q.offset, limit: q.limit },
    );
    return reply.header('cache-control', 'private, no-store').send({
      total,
      offset: q.offset,
      limit: q.limit,
      ledgerSize: index.size,
      unreadableEntries: index.unreadable.length,
      sessions,
    });
  });

  app.get('/api/compliance/sessions/:id', api, async (req, reply) => {
    const { id } = parseInput(sessionParamsSchema, req.params, 'session id');
    parseInput(noQuery, req.query, 'query');
    const s = await sessionOr404(id);
    const a = await assembleEvidence(sources, id, s.indexes);
    req.log.info({ sessionId: id, staffId: req.staff?.id, entries: s.indexes.length }, 'compliance: session evidence read');
    return reply.header('cache-control', 'private, no-store').send({ session: s.summary, evidence: a.evidence, notes: a.notes });
  });

  app.get('/api/compliance/sessions/:id/bundle', api, async (req, reply) => {
    const { id } = parseInput(sessionParamsSchema, req.params, 'session id');
    parseInput(noQuery, req.query, 'query');
    const s = await sessionOr404(id);
    const a = await assembleEvidence(sources, id, s.indexes);
    const manifest = bundleManifest(a, req.staff!.id);
    req.log.info({ sessionId: id, staffId: req.staff!.id, entries: manifest.entries.length, blobs: manifest.blobs.length }, 'compliance: evidence bundle exported');
    return reply
      .header('cache-control', 'private, no-store')
      .header('content-disposition', `attachment; filename="videoteller-session-${id}.tar"`)
      .type('application/x-tar')
      .send(bundleStream(a, manifest));
  });

  app.get('/api/compliance/sessions/:id/recording', recordingMedia, async (req, reply) => {
    const { id } = parseInput(sessionParamsSchema, req.params, 'session id');
    const q = parseInput(recordingQuerySchema, req.query, 'query');
    const s = await sessionOr404(id);
    const recordings = s.summary.recordings;
    const rec = q.sha256 ? recordings.find((r) => r.sha256 === q.sha256) : recordings.at(-1);
    if (!rec) {
      const failed = s.summary.recordingFailures.at(-1);
      throw new HttpError(404, 'not_found', q.sha256 ? 'the session has no recording with this SHA-256' : failed ? `the session's recording failed (${failed.code}, entry ${failed.entryIndex})` : 'the session has no stored recording');
    }
    const state = await verified.check(rec.sha256);
    if (!state.ok) {
      throw state.reason === 'not_found'
        ? new HttpError(404, 'not_found', `the recording ${rec.sha256} is not in the blob store`)
        : new HttpError(409, 'conflict', `the stored recording no longer matches its SHA-256 ${rec.sha256}: it is not served as evidence`, { reason: 'blob_corrupt' });
    }
    let file = state.path;
    let etag = `"${rec.sha256}"`;
    if (q.participant) {
      const container = rec.container === 'matroska' || rec.mimeType === 'video/x-matroska' ? 'matroska' : 'webm';
      try {
        file = await views.view(state.path, rec.sha256, q.participant, rec.tracks, container);
      } catch (err) {
        if (err instanceof RecordingViewError && /has no/.test(err.message)) throw new HttpError(404, 'not_found', err.message);
        throw err;
      }
      etag = `"${rec.sha256}.${q.participant}"`;
      reply.header('x-videoteller-derived', `view of ${rec.sha256} (stream copy of the ${q.participant}'s tracks); not evidence`);
    }
    return sendFile(req, reply, file, rec.mimeType, etag);
  });

  app.get('/api/compliance/sessions/:id/blobs/:sha256', media, async (req, reply) => {
    const { id, sha256 } = parseInput(blobParamsSchema, req.params, 'blob');
    parseInput(noQuery, req.query, 'query');
    const s = await sessionOr404(id);
    const named = s.summary.blobs.find((b) => b.sha256 === sha256);
    if (!named) throw new HttpError(404, 'not_found', 'no entry of this session names this blob');
    const state = await verified.check(sha256);
    if (!state.ok) {
      throw state.reason === 'not_found'
        ? new HttpError(404, 'not_found', `blob ${sha256} is not in the blob store`)
        : new HttpError(409, 'conflict', `blob ${sha256} no longer matches its SHA-256: it is not served as evidence`, { reason: 'blob_corrupt' });
    }
    const [stored] = await opts.ledger.getEntries(named.entryIndex, named.entryIndex + 1);
    const p = (stored?.entry.payload ?? {}) as Record<string, unknown>;
    const type = named.kind === 'recording' ? String(p.mimeType ?? 'video/webm') : p.format === 'png' ? 'image/png' : 'image/jpeg';
    return sendFile(req, reply, state.path, type, `"${sha256}"`);
  });
}

/** Sends a file whole or one byte range of it (RFC 9110 §14), never buffered in memory. */
async function sendFile(req: FastifyRequest, reply: FastifyReply, file: string, type: string, etag: string): Promise<FastifyReply> {
  const { size } = await stat(file);
  const range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, size);
  reply.header('accept-ranges', 'bytes').header('etag', etag).header('cache-control', 'private, no-store');
  if (range === 'unsatisfiable') {
    reply.header('content-range', `bytes */${size}`);
    throw new HttpError(416, 'bad_request', `the range is not within the ${size} bytes of the file`, { reason: 'range_not_satisfiable' });
  }
  reply.type(type);
  if (!range) return reply.header('content-length', String(size)).send(createReadStream(file));
  return reply
    .code(206)
    .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    .header('content-length', String(range.end - range.start + 1))
    .send(createReadStream(file, { start: range.start, end: range.end }));
}

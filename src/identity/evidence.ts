/**
 * Identity results → evidence entries for the session's EvidenceSink (src/evidence.ts), which
 * the server backs with the signed ledger.
 *
 * Payloads hold hashes, scores, counts and decisions only: never image bytes, never a
 * thumbnail, never a raw descriptor. assertEvidencePayload() enforces that on every entry
 * built here (typed arrays, long numeric arrays, long strings and non-finite numbers are
 * refused), so a later edit cannot slip one in by accident.
 *
 * The reference descriptor is NOT stored, only its SHA-256 (over the 128 little-endian
 * float32 values) and the model versions. Why: a face descriptor is biometric data (GDPR
 * art. 9), and an append-only signed log cannot erase it when retention ends; it is also
 * not needed to check a decision later: the reference photo is kept in the blob store under
 * its SHA-256 (which the entry records), and re-analysing it with the recorded model versions
 * gives the descriptor again, whose digest then proves it is the one that was used. (WASM
 * float results are reproducible for the same tfjs build and SIMD setting; the entry records
 * both versions.) Deleting the photo blob at the end of retention leaves the log intact.
 *
 * Times (`t`) must be epoch milliseconds here: the per-second summaries are keyed by them.
 */
import { createHash } from 'node:crypto';
import type { EvidenceEntry, EvidenceSink } from '../evidence.ts';
import type { DocumentCapture } from './document.ts';
import type { Challenge, ChallengeResult, LivenessSummary } from './liveness.ts';
import type { FrameReport, MonitorSnapshot } from './monitor.ts';
import type { QualityIssue } from './quality.ts';
import type { ReferencePhoto } from './reference-photo.ts';
import type { Decision, FrameVerdict } from './scoring.ts';

export const IDENTITY_EVIDENCE = {
  referencePhoto: 'identity.reference_photo',
  matchSummary: 'identity.match_summary',
  challenge: 'identity.liveness_challenge',
  liveness: 'identity.liveness_result',
  documentCapture: 'identity.document_capture',
  snapshot: 'identity.decision_snapshot',
} as const;

const r4 = (v: number): number => Math.round(v * 1e4) / 1e4;
const r4n = (v: number | null): number | null => (v === null ? null : r4(v));

/** SHA-256 of a descriptor's 128 float32 values, little-endian: identifies it without revealing it. */
export function descriptorDigest(descriptor: Float32Array): string {
  const buf = Buffer.alloc(descriptor.length * 4);
  descriptor.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return createHash('sha256').update(buf).digest('hex');
}

function norm(d: Float32Array): number {
  let s = 0;
  for (const v of d) s += v * v;
  return Math.sqrt(s);
}

/** Throws if a payload could carry image or biometric data, or cannot go into canonical JSON. */
export function assertEvidencePayload(payload: unknown, at = 'payload'): void {
  if (payload === null || typeof payload === 'boolean') return;
  if (typeof payload === 'number') {
    if (!Number.isFinite(payload)) throw new TypeError(`${at}: non-finite number`);
    return;
  }
  if (typeof payload === 'string') {
    if (payload.length > 256) throw new TypeError(`${at}: string longer than 256 characters`);
    return;
  }
  if (ArrayBuffer.isView(payload) || payload instanceof ArrayBuffer) throw new TypeError(`${at}: binary data is not allowed in evidence`);
  if (Array.isArray(payload)) {
    if (payload.length > 32) throw new TypeError(`${at}: array longer than 32 items`);
    payload.forEach((v, i) => assertEvidencePayload(v, `${at}[${i}]`));
    return;
  }
  if (typeof payload === 'object') {
    for (const [k, v] of Object.entries(payload)) {
      if (v === undefined) throw new TypeError(`${at}.${k}: undefined (use null)`);
      assertEvidencePayload(v, `${at}.${k}`);
    }
    return;
  }
  throw new TypeError(`${at}: ${typeof payload} is not allowed`);
}

function entry(sessionId: string, type: string, actor: string, payload: Record<string, unknown>): EvidenceEntry {
  assertEvidencePayload(payload);
  return { sessionId, type, actor, payload };
}

// ---------------------------------------------------------------------------------------------

export function referencePhotoEntry(sessionId: string, ref: ReferencePhoto, actor = 'system'): EvidenceEntry {
  return entry(sessionId, IDENTITY_EVIDENCE.referencePhoto, actor, {
    photoSha256: ref.sha256,
    format: ref.format,
    width: ref.width,
    height: ref.height,
    detectionScore: r4(ref.detectionScore),
    faceBox: { x: Math.round(ref.box.x), y: Math.round(ref.box.y), width: Math.round(ref.box.width), height: Math.round(ref.box.height) },
    quality: {
      faceWidthPx: Math.round(ref.quality.faceWidthPx),
      yawDeg: r4(ref.quality.yaw),
      sharpness: r4(ref.quality.sharpness),
      luma: r4(ref.quality.luma),
    },
    descriptorSha256: descriptorDigest(ref.descriptor),
    descriptorNorm: r4(norm(ref.descriptor)),
    model: ref.model,
  });
}

/**
 * Aggregates a call's FrameReports into one entry per second of frames (by frame time).
 * `add` returns the entries of seconds that are complete (a frame of a later second arrived);
 * `flush` returns the last one at the end of the call.
 */
export class MatchSummarizer {
  private second: number | null = null;
  private frames: FrameReport[] = [];
  private dropped = 0;

  constructor(
    private readonly sessionId: string,
    private readonly callId: string,
  ) {}

  /** `droppedSinceLast`: frames the engine dropped (latest-frame-wins) since the previous report. */
  add(report: FrameReport, droppedSinceLast = 0): EvidenceEntry[] {
    const s = Math.floor(report.t / 1000);
    const out: EvidenceEntry[] = [];
    if (this.second !== null && s !== this.second) out.push(...this.flush());
    this.second = s;
    this.frames.push(report);
    this.dropped += droppedSinceLast;
    return out;
  }

  flush(): EvidenceEntry[] {
    if (this.second === null || this.frames.length === 0) return [];
    const fs = this.frames;
    const verdicts: Record<FrameVerdict, number> = { match: 0, no_match: 0, no_face: 0, multiple_faces: 0, unusable: 0 };
    const issues: Partial<Record<QualityIssue, number>> = {};
    const distances: number[] = [];
    for (const f of fs) {
      verdicts[f.match.verdict]++;
      for (const i of f.quality.issues) issues[i] = (issues[i] ?? 0) + 1;
      if (f.match.verdict === 'match' || f.match.verdict === 'no_match') distances.push(f.match.distance!);
    }
    distances.sort((a, b) => a - b);
    const last = fs[fs.length - 1]!;
    const decision: Decision = last.decision.decision;
    const e = entry(this.sessionId, IDENTITY_EVIDENCE.matchSummary, 'system', {
      callId: this.callId,
      second: this.second,
      frames: fs.length,
      droppedFrames: this.dropped,
      verdicts,
      minDistance: distances.length ? r4(distances[0]!) : null,
      medianDistance: distances.length ? r4(distances[distances.length >> 1]!) : null,
      maxDistance: distances.length ? r4(distances[distances.length - 1]!) : null,
      decision,
      decisionWindow: { match: last.decision.matchFrames, noMatch: last.decision.noMatchFrames, frames: last.decision.framesInWindow },
      qualityIssues: issues,
      approvalAllowedByQuality: last.qualityStatus.approvalAllowed,
      maxAnalysisMs: Math.round(Math.max(...fs.map((f) => f.analysisMs))),
    });
    this.second = null;
    this.frames = [];
    this.dropped = 0;
    return [e];
  }
}

export function challengeEntry(sessionId: string, challenge: Challenge, result: ChallengeResult): EvidenceEntry {
  return entry(sessionId, IDENTITY_EVIDENCE.challenge, 'system', {
    challengeId: challenge.id,
    type: challenge.type,
    issuedAt: challenge.issuedAt,
    deadline: challenge.deadline,
    status: result.status,
    reason: result.reason,
    baseline: r4n(result.baseline),
    peak: r4n(result.peak),
    frames: result.frames,
    passedAfterMs: result.passedAfterMs,
  });
}

export function livenessEntry(sessionId: string, summary: LivenessSummary, results: readonly ChallengeResult[]): EvidenceEntry {
  return entry(sessionId, IDENTITY_EVIDENCE.liveness, 'system', {
    status: summary.status,
    passed: summary.passed,
    failed: summary.failed,
    pending: summary.pending,
    challenges: results.slice(0, 32).map((r) => ({ challengeId: r.challengeId, type: r.type, status: r.status, reason: r.reason })),
  });
}

/** The document still the teller captured, with what they confirmed seeing on it. */
export function documentCaptureEntry(
  sessionId: string,
  tellerId: string,
  capture: DocumentCapture,
  checklist: Record<string, boolean>,
): EvidenceEntry {
  if (Object.keys(checklist).length > 16) throw new TypeError('checklist: at most 16 items');
  return entry(sessionId, IDENTITY_EVIDENCE.documentCapture, tellerId, {
    imageSha256: capture.sha256,
    format: capture.format,
    width: capture.width,
    height: capture.height,
    faceCount: capture.faceCount,
    documentFace: capture.documentFace
      ? {
          detectionScore: r4(capture.documentFace.detectionScore),
          distanceToReference: r4(capture.documentFace.distanceToReference),
          matchesReference: capture.documentFace.matchesReference,
          distanceToLive: r4n(capture.documentFace.distanceToLive),
          matchesLive: capture.documentFace.matchesLive,
        }
      : null,
    checklist,
  });
}

/** The identity state at the moment the teller decides (the record's decision refers to it). */
export function decisionSnapshotEntry(sessionId: string, actor: string, snapshot: MonitorSnapshot): EvidenceEntry {
  const d = snapshot.decision;
  return entry(sessionId, IDENTITY_EVIDENCE.snapshot, actor, {
    decision: d.decision,
    matchFrames: d.matchFrames,
    noMatchFrames: d.noMatchFrames,
    framesInWindow: d.framesInWindow,
    medianDistance: r4n(d.medianDistance),
    qualityApprovalAllowed: snapshot.quality.approvalAllowed,
    adequateFrames: snapshot.quality.adequateFrames,
    topQualityIssues: snapshot.quality.topIssues.slice(0, 8),
    liveness: snapshot.liveness.status,
    blockers: snapshot.blockers,
  });
}

/** Append entries in order; resolves when the last one is durable. */
export async function appendAll(sink: EvidenceSink, entries: readonly EvidenceEntry[]): Promise<number[]> {
  const out: number[] = [];
  for (const e of entries) out.push((await sink.append(e)).index);
  return out;
}

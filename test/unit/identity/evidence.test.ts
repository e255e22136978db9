import { describe, expect, it } from 'vitest';
import type { EvidenceEntry, EvidenceSink } from '../../../src/evidence.ts';
import {
  appendAll,
  assertEvidencePayload,
  challengeEntry,
  decisionSnapshotEntry,
  descriptorDigest,
  documentCaptureEntry,
  IDENTITY_EVIDENCE,
  livenessEntry,
  MatchSummarizer,
  referencePhotoEntry,
} from '../../../src/identity/evidence.ts';
import { CallMonitor, type FrameReport } from '../../../src/identity/monitor.ts';
import type { ReferencePhoto } from '../../../src/identity/reference-photo.ts';
import type { FaceObservation, FrameAnalysis } from '../../../src/identity/types.ts';
import { fixtureFaces } from '../../fixtures/faces/samples.ts';

const descriptor = Float32Array.from({ length: 128 }, (_, i) => Math.sin(i) / 8);
const ref: ReferencePhoto = {
  sha256: 'a'.repeat(64),
  format: 'jpeg',
  width: 600,
  height: 800,
  descriptor,
  detectionScore: 0.987654321,
  box: { x: 100.4, y: 150.6, width: 300.2, height: 360.9 },
  quality: { faceWidthPx: 300.2, yaw: 3.21, sharpness: 9.87, luma: 130.1 },
  model: { detector: 'ssd', faceApi: '1.7.15', tfjs: '4.22.0' },
};

/** Every value in a payload, flattened, to look for anything descriptor- or image-like. */
function leaves(v: unknown): unknown[] {
  if (v && typeof v === 'object') return Object.values(v).flatMap(leaves);
  return [v];
}

describe('evidence payloads', () => {
  it('reference photo: hashes and quality, never the descriptor or the photo', () => {
    const e = referencePhotoEntry('s1', ref);
    expect(e.type).toBe(IDENTITY_EVIDENCE.referencePhoto);
    expect(e.payload).toMatchObject({ photoSha256: ref.sha256, descriptorSha256: descriptorDigest(descriptor), detectionScore: 0.9877 });
    const json = JSON.stringify(e);
    for (const v of descriptor.slice(1, 9)) expect(json).not.toContain(String(v).slice(0, 7));
    expect(leaves(e.payload).filter((x) => typeof x === 'number').length).toBeLessThan(20);
  });

  it('descriptorDigest identifies a descriptor without revealing it', () => {
    expect(descriptorDigest(descriptor)).toMatch(/^[0-9a-f]{64}$/);
    expect(descriptorDigest(new Float32Array(descriptor))).toBe(descriptorDigest(descriptor));
    const other = new Float32Array(descriptor);
    other[5] = other[5]! + 1e-6;
    expect(descriptorDigest(other)).not.toBe(descriptorDigest(descriptor));
  });

  it('refuses binary data, long arrays, long strings and non-finite numbers', () => {
    expect(() => assertEvidencePayload({ d: descriptor })).toThrow(/binary/);
    expect(() => assertEvidencePayload({ img: Buffer.from('x') })).toThrow(/binary/);
    expect(() => assertEvidencePayload({ d: Array.from(descriptor) })).toThrow(/longer than 32/);
    expect(() => assertEvidencePayload({ b64: 'A'.repeat(300) })).toThrow(/256/);
    expect(() => assertEvidencePayload({ x: Number.NaN })).toThrow(/non-finite/);
    expect(() => assertEvidencePayload({ x: undefined })).toThrow(/undefined/);
    expect(() => assertEvidencePayload({ ok: [1, 'a', null, { b: true }] })).not.toThrow();
  });

  it('challenge, liveness, document and snapshot entries', () => {
    const c = { id: 'c1', type: 'turn_left' as const, issuedAt: 1000, deadline: 9000 };
    const r = { challengeId: 'c1', type: 'turn_left' as const, status: 'passed' as const, reason: 'ok' as const, baseline: 5.123456, peak: 41.98765, frames: 4, passedAfterMs: 1500 };
    expect(challengeEntry('s1', c, r).payload).toEqual({ challengeId: 'c1', type: 'turn_left', issuedAt: 1000, deadline: 9000, status: 'passed', reason: 'ok', baseline: 5.1235, peak: 41.9877, frames: 4, passedAfterMs: 1500 });
    expect(livenessEntry('s1', { status: 'passed', passed: 2, failed: 0, pending: 0 }, [r, r]).payload).toMatchObject({ status: 'passed', passed: 2 });
    const doc = documentCaptureEntry(
      's1',
      'teller-7',
      { sha256: 'b'.repeat(64), format: 'jpeg', width: 1280, height: 720, faceCount: 2, documentFace: { detectionScore: 0.9, distanceToReference: 0.41234, matchesReference: true, distanceToLive: null, matchesLive: null } },
      { hologram: true, personalisation: true, material: false, securityPrint: true },
    );
    expect(doc.actor).toBe('teller-7');
    expect(doc.payload).toMatchObject({ imageSha256: 'b'.repeat(64), faceCount: 2, documentFace: { distanceToReference: 0.4123 }, checklist: { material: false } });
    const monitor = new CallMonitor({ reference: descriptor });
    const snap = decisionSnapshotEntry('s1', 'teller-7', monitor.snapshot(0));
    expect(snap.payload).toMatchObject({ decision: 'inconclusive', qualityApprovalAllowed: false, liveness: 'pending', blockers: ['no_match_decision', 'quality_inadequate', 'liveness_not_passed'] });
  });
});

// --- per-second summaries through the monitor ----------------------------------------------------

const LM = fixtureFaces().faces.find((f) => f.id === 's6f2')!.landmarks68; // a real frontal face
function frame(d: number | null, seed: number): FrameAnalysis {
  const faces: FaceObservation[] =
    d === null
      ? []
      : [{ box: { x: 220, y: 120, width: 200, height: 240 }, score: 0.9, landmarks68: LM, descriptor: (() => { const v = new Float32Array(descriptor); v[0] = v[0]! + d; return v; })(), luma: 120, sharpness: 8 }];
  return { width: 640, height: 480, detector: 'tiny', faces, stats: { meanLuma: 100, thumb: new Uint8Array(64 * 48).fill(seed & 255) }, ms: 120 };
}

describe('MatchSummarizer', () => {
  it('emits one entry per second of frames, with counts, distances and the decision', () => {
    const monitor = new CallMonitor({ reference: descriptor });
    const sum = new MatchSummarizer('s1', 'call-1');
    const t0 = 1_700_000_000_000;
    const out: EvidenceEntry[] = [];
    const ds = [0.2, 0.25, 0.3, 0.2, 0.8, null, 0.2, 0.2];
    ds.forEach((d, i) => {
      const r: FrameReport = monitor.onFrame(frame(d, i), t0 + i * 500);
      out.push(...sum.add(r, i === 1 ? 2 : 0));
    });
    out.push(...sum.flush());
    expect(out.length).toBe(4);
    expect(out.every((e) => e.type === IDENTITY_EVIDENCE.matchSummary)).toBe(true);
    expect(out[0]!.payload).toMatchObject({ callId: 'call-1', second: t0 / 1000, frames: 2, droppedFrames: 2, verdicts: { match: 2 }, minDistance: 0.2, maxDistance: 0.25, decision: 'inconclusive' });
    expect(out[2]!.payload).toMatchObject({ verdicts: { no_match: 1, no_face: 1 }, qualityIssues: { no_face: 1 } });
    expect(out[3]!.payload).toMatchObject({ decision: 'match', decisionWindow: { match: 6, noMatch: 1, frames: 8 } });
    expect(sum.flush()).toEqual([]);
  });

  it('appendAll appends in order and returns the indexes', async () => {
    const got: EvidenceEntry[] = [];
    const sink: EvidenceSink = { append: async (e) => ({ index: got.push(e) - 1 }) };
    const es = [referencePhotoEntry('s1', ref), referencePhotoEntry('s2', ref)];
    expect(await appendAll(sink, es)).toEqual([0, 1]);
    expect(got.map((e) => e.sessionId)).toEqual(['s1', 's2']);
  });
});

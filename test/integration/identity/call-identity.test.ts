/**
 * One call's identity checks (CallIdentity) with the real face engine on real faces, frames as
 * the frame tap delivers them (640×480 packed RGB), time driven by the test: the match decision,
 * a still picture failing the liveness challenges, another person not matching, the approval
 * blockers, the record's evidence summary, and what ends up in the signed evidence.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobStore } from '../../../src/identity/blobs.ts';
import { CallIdentity, CallIdentityError, type IdentityReport, type LivenessView } from '../../../src/identity/call-identity.ts';
import { FaceEngine } from '../../../src/identity/engine.ts';
import { IDENTITY_EVIDENCE } from '../../../src/identity/evidence.ts';
import type { RgbImage } from '../../../src/identity/image.ts';
import { extractReference, type ReferencePhoto } from '../../../src/identity/reference-photo.ts';
import { DEFAULT_MATCH_CONFIG } from '../../../src/identity/scoring.ts';
import { createLogger } from '../../../src/logger.ts';
import { composeFrame, encodeJpeg, faceSquare, fixtureFaces, loadSample, scale } from '../../fixtures/faces/samples.ts';
import { openTestEvidence, type TestEvidence } from '../../helpers/evidence.ts';

const log = createLogger('silent');
const settings = { match: DEFAULT_MATCH_CONFIG, frameRate: 2, challengeFrameRate: 8, challenges: 2, challengeTimeoutMs: 8000 };

let engine: FaceEngine;
let evidence: TestEvidence;
let blobDir: string;
let blobs: BlobStore;
const crops = new Map<string, RgbImage>();
let reference: ReferencePhoto;

function crop(id: string): RgbImage {
  let c = crops.get(id);
  if (!c) {
    const f = fixtureFaces().faces.find((x) => x.id === id)!;
    c = faceSquare(loadSample(f.sample), f.box);
    crops.set(id, c);
  }
  return c;
}

beforeAll(async () => {
  engine = await FaceEngine.start({ workers: 1 });
  evidence = await openTestEvidence();
  blobDir = mkdtempSync(path.join(os.tmpdir(), 'vt-blobs-'));
  blobs = new BlobStore(blobDir);
  reference = await extractReference(engine, encodeJpeg(crop('s1f1'), 92));
});

afterAll(async () => {
  await engine?.close();
  await evidence?.close();
  if (blobDir) rmSync(blobDir, { recursive: true, force: true });
});

/** 640×480: two faces side by side, `leftWidth` and `rightWidth` px wide. */
function twoFaceFrame(left: RgbImage, right: RgbImage, leftWidth = 280, rightWidth = 280): RgbImage {
  const w = 640;
  const h = 480;
  const data = new Uint8Array(w * h * 3).fill(128);
  for (const [img, x0] of [[scale(left, leftWidth / left.width), 30], [scale(right, rightWidth / right.width), 330]] as const) {
    const y0 = Math.round((h - img.height) / 2);
    for (let y = 0; y < img.height; y++) {
      const row = (y0 + y) * w;
      data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), (row + x0) * 3);
    }
  }
  return { data, width: w, height: h };
}

/** A call's checks with a test clock, fed one frame at a time (waiting for each report). */
function harness(sessionId: string) {
  const clock = { now: 1_800_000_000_000 };
  const rates: number[] = [];
  const identity = new CallIdentity({
    sessionId,
    callId: `call-${sessionId}`,
    reference: reference.descriptor,
    engine,
    evidence: evidence.sink,
    blobs,
    settings,
    setFrameRate: (fps) => rates.push(fps),
    log,
    now: () => clock.now,
  });
  const reports: IdentityReport[] = [];
  const liveness: LivenessView[] = [];
  const prompts: unknown[] = [];
  identity.on('report', (r) => reports.push(r));
  identity.on('liveness', (v) => liveness.push(v));
  identity.on('prompt', (p) => prompts.push(p));
  async function frames(face: RgbImage, n: number, stepMs = 500): Promise<void> {
    for (let i = 0; i < n; i++) {
      clock.now += stepMs;
      const f = composeFrame(face, { seed: reports.length + i + 1, noise: 3 });
      const before = reports.length;
      identity.onFrame({ rgb: f.data, width: f.width, height: f.height, ts: clock.now });
      await expect.poll(() => reports.length, { timeout: 10_000, interval: 10 }).toBeGreaterThan(before);
    }
  }
  return { identity, clock, reports, liveness, prompts, rates, frames };
}

describe('the identity checks of a call', () => {
  it('matches the right person, fails liveness with a still picture, and blocks approval for it', async () => {
    const h = harness('session-still');
    await h.frames(crop('s1f1'), 10);
    const last = h.reports.at(-1)!;
    expect(last).toMatchObject({ faceCount: 1, verdict: 'match', decision: 'match' });
    expect(last.similarity!).toBeGreaterThan(0.5);
    expect(h.identity.snapshot().blockers).toEqual(['liveness_not_passed']);

    // The server issues the challenges; a still picture performs none of them.
    const view = h.identity.startLiveness(['turn_left', 'move_closer']);
    expect(view).toMatchObject({ status: 'running', challenges: [{ type: 'turn_left', status: 'pending' }] });
    expect(h.rates.at(-1)).toBe(8); // more frames while a challenge is open
    expect(() => h.identity.startLiveness()).toThrow(CallIdentityError);
    await h.frames(crop('s1f1'), 18); // 9 s: past the 8 s deadline
    const done = h.identity.livenessView();
    expect(done.status).toBe('failed');
    expect(done.challenges).toEqual([expect.objectContaining({ type: 'turn_left', status: 'failed', reason: 'not_performed' })]);
    expect(h.rates.at(-1)).toBe(2);
    expect(h.prompts.at(-1)).toBeNull();
    expect(h.identity.snapshot().blockers).toContain('liveness_not_passed');
    expect(h.identity.snapshot().blockers).not.toContain('no_match_decision');

    const summary = h.identity.summary();
    expect(summary).toMatchObject({ faceMatch: { decision: 'match', threshold: DEFAULT_MATCH_CONFIG.threshold }, liveness: { outcome: 'failed', challenges: 1 } });
    expect(summary.faceMatch!.score).toBeGreaterThan(0.5);
    expect(summary.faceMatch!.model).toBe(`face-api ${engine.info.faceApi} tfjs ${engine.info.tfjs}`);
    expect(engine.info.faceApi).toMatch(/^1\.7\./);

    await h.identity.recordSnapshot('t-alice');
    await h.identity.close();
    const types = evidence.entries('session-still').map((e) => e.type);
    expect(types).toContain(IDENTITY_EVIDENCE.matchSummary);
    expect(types).toContain(IDENTITY_EVIDENCE.challenge);
    expect(types).toContain(IDENTITY_EVIDENCE.liveness);
    expect(types).toContain(IDENTITY_EVIDENCE.snapshot);
    // One summary per second of frames, never the frames themselves.
    const summaries = evidence.entries('session-still').filter((e) => e.type === IDENTITY_EVIDENCE.matchSummary);
    expect(summaries.length).toBeGreaterThanOrEqual(10);
    expect(JSON.stringify(summaries)).not.toMatch(/descriptor"|rgb|data:/);
  });

  it('does not match another person, and says why approval is blocked', async () => {
    const h = harness('session-other');
    await h.frames(crop('s1f0'), 10);
    expect(h.reports.at(-1)).toMatchObject({ verdict: 'no_match', decision: 'no_match' });
    expect(h.identity.snapshot().blockers).toEqual(expect.arrayContaining(['no_match_decision', 'liveness_not_passed']));
    expect(h.identity.summary().faceMatch).toMatchObject({ decision: 'no_match' });
    await h.identity.close();
  });

  it('captures the ID document from its own frame: the portrait on it matches the ID photo and the live face', async () => {
    const h = harness('session-document');
    await expect(h.identity.captureDocument('t-alice', { hologram: true, personalisation: true, material: true, securityPrint: true })).rejects.toMatchObject({
      code: 'invalid_state',
    });
    await h.frames(crop('s1f1'), 8);
    // The customer holds their ID card up: their face, and beside it the card's smaller portrait of them.
    const holding = twoFaceFrame(crop('s1f1'), crop('s1f1'), 280, 170);
    h.clock.now += 500;
    const before = h.reports.length;
    h.identity.onFrame({ rgb: holding.data, width: holding.width, height: holding.height, ts: h.clock.now });
    await expect.poll(() => h.reports.length, { timeout: 10_000, interval: 10 }).toBeGreaterThan(before);
    const capture = await h.identity.captureDocument('t-alice', { hologram: true, personalisation: true, material: false, securityPrint: true });
    expect(capture.faceCount).toBe(2);
    expect(capture.documentFace).toMatchObject({ matchesReference: true, matchesLive: true });
    expect(await blobs.has(capture.sha256)).toBe(true);
    expect(h.identity.summary().document).toEqual({ captured: true, type: 'id_document', imageSha256: capture.sha256 });
    await h.identity.close();
    const entry = evidence.entries('session-document').find((e) => e.type === IDENTITY_EVIDENCE.documentCapture)!;
    expect(entry.actor).toBe('t-alice');
    expect(entry.payload).toMatchObject({ imageSha256: capture.sha256, faceCount: 2, checklist: { material: false }, documentFace: { matchesReference: true } });
  });

  it('flags two faces in the picture and tells the customer', async () => {
    const h = harness('session-two');
    const guidance: unknown[] = [];
    h.identity.on('guidance', (g) => guidance.push(g));
    const frame = twoFaceFrame(crop('s1f1'), crop('s1f0'));
    for (let i = 0; i < 4; i++) {
      h.clock.now += 500;
      const before = h.reports.length;
      h.identity.onFrame({ rgb: frame.data, width: frame.width, height: frame.height, ts: h.clock.now });
      await expect.poll(() => h.reports.length, { timeout: 10_000, interval: 10 }).toBeGreaterThan(before);
    }
    await h.identity.close();
    expect(h.reports.at(-1)).toMatchObject({ faceCount: 2, verdict: 'multiple_faces' });
    expect(guidance).toContain('only_you_in_picture');
  });
});

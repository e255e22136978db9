/**
 * The identity checks of one call: frames from the server's own tap of the customer's video go
 * to the face engine (latest frame wins), their analyses to a CallMonitor; what it finds streams
 * to the teller (reports) and the customer (guidance, liveness prompts), and into the evidence
 * (one match summary per second, every challenge and its outcome, the liveness result).
 *
 * The rules themselves (what matches, what passes) are the pure functions of scoring.ts,
 * quality.ts and liveness.ts; this module only sequences them in time.
 */
import { EventEmitter } from 'node:events';
import type { ChallengeView, IdentityReport, LivenessView } from '../../signaling/protocol.ts';
import type { EvidenceEntry, EvidenceSink } from '../evidence.ts';
import type { EvidenceSummary } from '../ledger/record-claims.ts';
import type { Logger } from '../logger.ts';
import type { FaceEngine, Frame } from './engine.ts';
import type { BlobStore } from './blobs.ts';
import { assessDocumentCapture, type DocumentCapture } from './document.ts';
import { encodeJpeg } from './image.ts';
import { challengeEntry, decisionSnapshotEntry, documentCaptureEntry, livenessEntry, MatchSummarizer } from './evidence.ts';
import { CHALLENGE_TYPES, pickChallenges, summarizeLiveness, type Challenge, type ChallengeResult, type ChallengeType } from './liveness.ts';
import { CallMonitor, type FrameReport, type MonitorSnapshot } from './monitor.ts';
import type { GuidanceCode } from './quality.ts';
import { similarity } from './scoring.ts';
import type { IdentitySettings } from './service.ts';

export type { ChallengeView, IdentityReport, LivenessView };

export interface CallIdentityEvents {
  report: [IdentityReport];
  /** The customer's guidance changed (null: nothing to fix). */
  guidance: [GuidanceCode | null];
  /** The open challenge for the customer's prompt (null: none open). */
  prompt: [ChallengeView | null];
  liveness: [LivenessView];
}

export interface CallIdentityOptions {
  sessionId: string;
  callId: string;
  reference: ArrayLike<number>;
  engine: FaceEngine;
  evidence: EvidenceSink;
  /** Where the document stills go (referenced by SHA-256 in the evidence, never inlined). */
  blobs: BlobStore;
  settings: IdentitySettings;
  /** Asks the frame source for another rate (more frames while a challenge is open). */
  setFrameRate?: (fps: number) => void;
  log: Logger;
  now?: () => number;
}

export class CallIdentityError extends Error {
  constructor(
    readonly code: 'invalid_state' | 'conflict',
    message: string,
  ) {
    super(message);
    this.name = 'CallIdentityError';
  }
}

/** Frames without a usable face for this long make the customer's guidance say so. */
const GUIDANCE_AFTER_FRAMES = 2;

export class CallIdentity extends EventEmitter<CallIdentityEvents> {
  private readonly monitor: CallMonitor;
  private readonly summarizer: MatchSummarizer;
  private readonly now: () => number;
  private readonly callKey: string;
  private closed = false;
  private lastGuidance: GuidanceCode | null = null;
  private guidanceStreak: { code: GuidanceCode | null; frames: number } = { code: null, frames: 0 };
  private lastDropped = 0;
  private evidenceChain: Promise<unknown> = Promise.resolve();
  private liveness: { types: ChallengeType[]; issued: Challenge[]; results: ChallengeResult[]; timer?: NodeJS.Timeout } | undefined;
  private frames = 0;
  /** The newest decoded frame, for the document still (the server's own picture, not the browser's). */
  private lastFrame: Frame | undefined;
  /** The live face of the newest frame with exactly one face that matched the reference. */
  private lastLiveDescriptor: Float32Array | undefined;
  private document: DocumentCapture | undefined;

  constructor(private readonly opts: CallIdentityOptions) {
    super();
    this.now = opts.now ?? Date.now;
    this.callKey = opts.callId;
    this.monitor = new CallMonitor({
      reference: opts.reference,
      match: opts.settings.match,
      liveness: { timeoutMs: opts.settings.challengeTimeoutMs },
      // The documented rule: at least two challenges, all passed (the check issues settings.challenges).
      requiredChallenges: 2,
    });
    this.summarizer = new MatchSummarizer(opts.sessionId, opts.callId);
  }

  /** A decoded frame of the customer's video. Never throws; a slow engine drops older frames. */
  onFrame(frame: Frame): void {
    if (this.closed) return;
    this.lastFrame = frame;
    this.opts.engine
      .submitFrame(this.callKey, frame)
      .then((outcome) => {
        if (this.closed) return;
        if (outcome.status === 'failed') {
          this.opts.log.warn({ err: outcome.error }, 'frame analysis failed');
          return;
        }
        if (outcome.status !== 'analyzed') return;
        this.frames++;
        const report = this.monitor.onFrame(outcome.analysis, outcome.ts);
        if (report.match.verdict === 'match' && outcome.analysis.faces.length === 1) this.lastLiveDescriptor = outcome.analysis.faces[0]!.descriptor;
        const dropped = this.opts.engine.callStats(this.callKey)?.dropped ?? 0;
        this.record(this.summarizer.add(report, dropped - this.lastDropped));
        this.lastDropped = dropped;
        this.emit('report', toReport(report));
        this.updateGuidance(report);
        this.pollChallenge();
      })
      .catch((err) => this.opts.log.error({ err }, 'frame handling failed'));
  }

  /**
   * Runs the liveness check: `count` challenges picked at random by the server (or the given
   * ones), one at a time, each with its deadline; the next is issued when one passes, and the
   * check stops at the first failure.
   */
  startLiveness(types?: readonly ChallengeType[]): LivenessView {
    if (this.closed) throw new CallIdentityError('invalid_state', 'the call has ended');
    if (this.liveness && !this.livenessFinished()) throw new CallIdentityError('conflict', 'a liveness check is already running');
    const chosen = types ? [...types] : pickChallenges(this.opts.settings.challenges);
    for (const t of chosen) if (!CHALLENGE_TYPES.includes(t)) throw new RangeError(`unknown challenge ${t}`);
    this.liveness = { types: chosen, issued: [], results: [] };
    this.issueNext();
    return this.livenessView();
  }

  /**
   * The teller captures the ID document the customer holds to the camera: the server encodes its
   * own newest frame, finds the document's portrait (the smallest face), compares it with the
   * reference photo and the live face, stores the still and records it with the teller's checklist.
   */
  async captureDocument(tellerId: string, checklist: Record<string, boolean>): Promise<DocumentCapture> {
    if (this.closed) throw new CallIdentityError('invalid_state', 'the call has ended');
    const frame = this.lastFrame;
    if (!frame) throw new CallIdentityError('invalid_state', 'no video frame from the customer yet');
    const bytes = new Uint8Array(encodeJpeg({ data: frame.rgb, width: frame.width, height: frame.height }, 92));
    const capture = await assessDocumentCapture(this.opts.engine, bytes, this.opts.reference, this.lastLiveDescriptor ?? null, this.opts.settings.match.threshold);
    await this.opts.blobs.put(bytes);
    await this.flushEvidence();
    await this.opts.evidence.append(documentCaptureEntry(this.opts.sessionId, tellerId, capture, checklist));
    this.document = capture;
    this.opts.log.info({ imageSha256: capture.sha256, faceCount: capture.faceCount, matchesReference: capture.documentFace?.matchesReference ?? null }, 'document captured');
    return capture;
  }

  snapshot(): MonitorSnapshot {
    return this.monitor.snapshot(this.now());
  }

  /** Frames analysed so far. */
  get analysedFrames(): number {
    return this.frames;
  }

  /** The evidence summary a verification record carries, as of now. */
  summary(): EvidenceSummary {
    const snap = this.snapshot();
    const d = snap.decision;
    const live = this.livenessView();
    return {
      faceMatch: {
        score: d.medianDistance === null ? 0 : round4(similarity(d.medianDistance, this.opts.settings.match)),
        decision: d.decision,
        threshold: this.opts.settings.match.threshold,
        // The library versions the workers actually run (and the live detector), as the engine reports them.
        model: `face-api ${this.opts.engine.info.faceApi} tfjs ${this.opts.engine.info.tfjs}`.slice(0, 64),
      },
      liveness: {
        outcome: live.status === 'passed' ? 'passed' : live.status === 'failed' ? 'failed' : 'inconclusive',
        challenges: live.challenges.length,
      },
      ...(this.document ? { document: { captured: true, type: 'id_document', imageSha256: this.document.sha256 } } : {}),
    };
  }

  /** Writes the identity state the decision is based on (the record refers to it). */
  async recordSnapshot(actor: string): Promise<MonitorSnapshot> {
    const snap = this.snapshot();
    await this.flushEvidence();
    await this.opts.evidence.append(decisionSnapshotEntry(this.opts.sessionId, actor, snap));
    return snap;
  }

  livenessView(): LivenessView {
    const l = this.liveness;
    if (!l) return { status: 'not_started', challenges: [] };
    const views: ChallengeView[] = l.issued.map((c) => {
      const r = l.results.find((x) => x.challengeId === c.id);
      return { challengeId: c.id, type: c.type, status: r?.status ?? 'pending', reason: r?.reason ?? 'waiting', deadline: c.deadline };
    });
    const failed = l.results.some((r) => r.status === 'failed');
    const passedAll = l.results.length === l.types.length && l.results.every((r) => r.status === 'passed');
    return { status: failed ? 'failed' : passedAll ? 'passed' : 'running', challenges: views };
  }

  /** Ends the checks: the last second's summary and an unfinished liveness check go into the evidence. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.liveness?.timer) clearInterval(this.liveness.timer);
    if (this.liveness && !this.livenessFinished()) {
      const r = this.monitor.poll(this.now() + this.opts.settings.challengeTimeoutMs + 1);
      if (r) this.finishChallenge(r);
    }
    this.record(this.summarizer.flush());
    this.opts.engine.releaseCall(this.callKey);
    await this.flushEvidence();
  }

  // -------------------------------------------------------------------------------------------

  private issueNext(): void {
    const l = this.liveness!;
    const type = l.types[l.issued.length];
    if (type === undefined) return;
    const challenge = this.monitor.issueChallenge(type, this.now(), this.opts.settings.challengeTimeoutMs);
    l.issued.push(challenge);
    this.opts.setFrameRate?.(this.opts.settings.challengeFrameRate);
    // The deadline must pass even if frames stop coming (camera off, network gone).
    l.timer ??= setInterval(() => this.pollChallenge(), 250);
    l.timer.unref();
    this.opts.log.info({ challengeId: challenge.id, type }, 'liveness challenge issued');
    this.emit('prompt', { challengeId: challenge.id, type, status: 'pending', reason: 'waiting', deadline: challenge.deadline });
    this.emit('liveness', this.livenessView());
  }

  private pollChallenge(): void {
    if (!this.liveness || this.closed) return;
    const r = this.monitor.poll(this.now());
    if (r) this.finishChallenge(r);
  }

  private finishChallenge(r: ChallengeResult): void {
    const l = this.liveness!;
    const challenge = l.issued.find((c) => c.id === r.challengeId);
    l.results.push(r);
    if (challenge) this.record([challengeEntry(this.opts.sessionId, challenge, r)]);
    this.opts.log.info({ challengeId: r.challengeId, type: r.type, status: r.status, reason: r.reason }, 'liveness challenge finished');
    this.emit('prompt', null);
    if (r.status === 'passed' && l.issued.length < l.types.length && !this.closed) {
      this.issueNext();
      return;
    }
    // Finished: all passed, or the first failure ends the check.
    if (l.timer) clearInterval(l.timer);
    l.timer = undefined;
    this.opts.setFrameRate?.(this.opts.settings.frameRate);
    const view = this.livenessView();
    // Every challenge of this check must pass (the check stops at the first failure).
    this.record([livenessEntry(this.opts.sessionId, summarizeLiveness(l.results, l.types.length), l.results)]);
    this.emit('liveness', view);
  }

  private livenessFinished(): boolean {
    const s = this.livenessView().status;
    return s === 'passed' || s === 'failed';
  }

  /** Guidance changes only after it held for a couple of frames, so the customer's page does not flicker. */
  private updateGuidance(report: FrameReport): void {
    const code = report.quality.guidance[0] ?? null;
    if (this.guidanceStreak.code === code) this.guidanceStreak.frames++;
    else this.guidanceStreak = { code, frames: 1 };
    if (this.guidanceStreak.frames >= GUIDANCE_AFTER_FRAMES && code !== this.lastGuidance) {
      this.lastGuidance = code;
      this.emit('guidance', code);
    }
  }

  /** Evidence is written in order, one entry after the other, without holding up frames. */
  private record(entries: EvidenceEntry[]): void {
    for (const e of entries) {
      this.evidenceChain = this.evidenceChain
        .then(() => this.opts.evidence.append(e))
        .catch((err) => this.opts.log.error({ err, type: e.type }, 'identity evidence append failed'));
    }
  }

  private async flushEvidence(): Promise<void> {
    await this.evidenceChain;
  }
}

function toReport(r: FrameReport): IdentityReport {
  return {
    t: r.t,
    faceCount: r.faceCount,
    verdict: r.match.verdict,
    similarity: r.match.similarity === null ? null : round4(r.match.similarity),
    distance: r.match.distance === null ? null : round4(r.match.distance),
    decision: r.decision.decision,
    qualityIssues: r.quality.reasons,
    approvalAllowedByQuality: r.qualityStatus.approvalAllowed,
    yaw: r.pose ? Math.round(r.pose.yaw) : null,
    analysisMs: Math.round(r.analysisMs),
  };
}

function round4(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}

/**
 * Everything the server works out about one call's identity, from its analysed frames:
 * per-frame match verdict and similarity, the rolling decision, capture quality and the
 * approval rule, and the liveness challenges. The call integration feeds it the outcomes of
 * FaceEngine.submitFrame and streams the FrameReports to the teller console.
 *
 *   const monitor = new CallMonitor({ reference: ref.descriptor });
 *   const o = await engine.submitFrame(callId, frame);
 *   if (o.status === 'analyzed') report = monitor.onFrame(o.analysis, o.ts);
 *   monitor.issueChallenge('turn_left', now);   // one at a time
 *   monitor.poll(now)                            // → the challenge result once it is final
 *
 * Synchronous and deterministic given its inputs (time is always passed in).
 */
import { randomUUID } from 'node:crypto';
import {
  DEFAULT_LIVENESS_CONFIG,
  evaluateChallenge,
  livenessSample,
  summarizeLiveness,
  type Challenge,
  type ChallengeResult,
  type ChallengeType,
  type LivenessConfig,
  type LivenessSample,
  type LivenessSummary,
} from './liveness.ts';
import { DEFAULT_QUALITY_CONFIG, QualityTracker, type FrameQuality, type QualityConfig, type QualityStatus } from './quality.ts';
import {
  classifyFrame,
  DEFAULT_MATCH_CONFIG,
  MatchTracker,
  validateMatchConfig,
  type DecisionState,
  type FrameMatch,
  type MatchConfig,
} from './scoring.ts';
import type { FrameAnalysis } from './types.ts';

export interface CallMonitorOptions {
  /** The reference descriptor (from extractReference). */
  reference: ArrayLike<number>;
  match?: Partial<MatchConfig>;
  quality?: Partial<QualityConfig>;
  liveness?: Partial<LivenessConfig>;
  /**
   * Frames whose face is turned further than this (|yaw|, degrees; default 45) do not count for
   * the match decision either way: descriptors of near-profiles drift, and the turn challenges
   * produce such frames on purpose. The real faces measured (bench distances) matched at up to
   * 43° by this estimator, which reads high (a face that looks turned 25–30° measures 35–40°).
   */
  maxMatchYaw?: number;
  /** Challenges required for an overall liveness pass. */
  requiredChallenges?: number;
}

export interface FrameReport {
  t: number;
  faceCount: number;
  match: FrameMatch;
  decision: DecisionState;
  quality: FrameQuality;
  qualityStatus: QualityStatus;
  /** Head yaw (°) and mean eye aspect ratio of the largest face, or null without a face. */
  pose: { yaw: number; ear: number } | null;
  /** The open challenge as of this frame, if any. */
  challenge: ChallengeResult | null;
  /** Analysis time in the worker, ms. */
  analysisMs: number;
}

export interface MonitorSnapshot {
  decision: DecisionState;
  quality: QualityStatus;
  liveness: LivenessSummary;
  challenges: ChallengeResult[];
  /** Approval is possible only with a 'match' decision, adequate quality and liveness passed. */
  blockers: ('no_match_decision' | 'quality_inadequate' | 'liveness_not_passed')[];
}

export class ChallengeConflictError extends Error {
  constructor() {
    super('a liveness challenge is still open');
    this.name = 'ChallengeConflictError';
  }
}

export class CallMonitor {
  private readonly reference: ArrayLike<number>;
  private readonly matchCfg: MatchConfig;
  private readonly livenessCfg: LivenessConfig;
  private readonly maxMatchYaw: number;
  private readonly requiredChallenges: number;
  private readonly matches: MatchTracker;
  private readonly quality: QualityTracker;
  private readonly samples: LivenessSample[] = [];
  private open: Challenge | null = null;
  private readonly results: ChallengeResult[] = [];

  constructor(opts: CallMonitorOptions) {
    if (opts.reference.length !== 128) throw new RangeError('the reference descriptor must have 128 values');
    this.reference = opts.reference;
    this.matchCfg = { ...DEFAULT_MATCH_CONFIG, ...opts.match };
    validateMatchConfig(this.matchCfg);
    this.livenessCfg = { ...DEFAULT_LIVENESS_CONFIG, ...opts.liveness };
    this.maxMatchYaw = opts.maxMatchYaw ?? 45;
    this.requiredChallenges = opts.requiredChallenges ?? 2;
    this.matches = new MatchTracker(this.matchCfg);
    this.quality = new QualityTracker({ ...DEFAULT_QUALITY_CONFIG, ...opts.quality });
  }

  /** Take the analysis of the call's next frame, captured at `t` (ms). Frames must come in time order. */
  onFrame(analysis: FrameAnalysis, t: number): FrameReport {
    const quality = this.quality.push(analysis, t);
    const sample0 = livenessSample(analysis, t);
    const pose = sample0.yaw !== null && sample0.ear !== null ? { yaw: sample0.yaw, ear: sample0.ear } : null;
    const frontal = pose === null || Math.abs(pose.yaw) <= this.maxMatchYaw;
    const match = classifyFrame(analysis.faces, this.reference, quality.adequate && frontal, this.matchCfg);
    const decision = this.matches.push(match, t);
    // Identity binding for liveness: a frame whose single, frontal, usable face is someone else
    // never counts. Turned faces (the challenges' own frames) are 'unknown': their descriptors
    // drift, and the person must anyway look at the camera between challenges, where the
    // rolling decision would turn against a swapped-in person.
    const matched = match.verdict === 'match' ? true : match.verdict === 'no_match' ? false : null;
    this.samples.push({ ...sample0, matched });
    this.trimSamples(t);
    return {
      t,
      faceCount: analysis.faces.length,
      match,
      decision,
      quality,
      qualityStatus: this.quality.status(t),
      pose,
      challenge: this.open ? evaluateChallenge(this.open, this.samples, t, this.livenessCfg) : null,
      analysisMs: analysis.ms,
    };
  }

  /** Open a challenge now; the page shows its prompt. Only one may be open at a time. */
  issueChallenge(type: ChallengeType, now: number, timeoutMs = this.livenessCfg.timeoutMs): Challenge {
    if (this.open) {
      const r = evaluateChallenge(this.open, this.samples, now, this.livenessCfg);
      if (r.status === 'pending') throw new ChallengeConflictError();
      this.finish(r);
    }
    this.open = { id: randomUUID(), type, issuedAt: now, deadline: now + timeoutMs };
    return { ...this.open };
  }

  /**
   * Re-evaluates the open challenge at `now` (call it on every frame and on a timer, so a
   * deadline passes even when frames stop). Returns the result once, when it becomes final.
   */
  poll(now: number): ChallengeResult | null {
    if (!this.open) return null;
    const r = evaluateChallenge(this.open, this.samples, now, this.livenessCfg);
    if (r.status === 'pending') return null;
    this.finish(r);
    return r;
  }

  get openChallenge(): Challenge | null {
    return this.open ? { ...this.open } : null;
  }

  snapshot(now: number): MonitorSnapshot {
    const decision = this.matches.state(now);
    const quality = this.quality.status(now);
    const open = this.open ? [evaluateChallenge(this.open, this.samples, now, this.livenessCfg)] : [];
    const challenges = [...this.results, ...open];
    const liveness = summarizeLiveness(challenges, this.requiredChallenges);
    const blockers: MonitorSnapshot['blockers'] = [];
    if (decision.decision !== 'match') blockers.push('no_match_decision');
    if (!quality.approvalAllowed) blockers.push('quality_inadequate');
    if (liveness.status !== 'passed') blockers.push('liveness_not_passed');
    return { decision, quality, liveness, challenges, blockers };
  }

  private finish(r: ChallengeResult): void {
    this.results.push(r);
    this.open = null;
  }

  /** Keep only what an open or future challenge can still look at. */
  private trimSamples(now: number): void {
    const keepFrom = Math.min(this.open ? this.open.issuedAt : now, now) - this.livenessCfg.baselineMs - 1000;
    while (this.samples.length > 0 && this.samples[0]!.t < keepFrom) this.samples.shift();
    while (this.samples.length > 2000) this.samples.shift();
  }
}

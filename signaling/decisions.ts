import { SCOPE_BUSINESS_TYPES } from '../src/auth/staff-directory.ts';
import type { StaffIdentity } from '../src/auth/staff-tokens.ts';
import { decisionRuleFor, needsDualControl, type AuthorizationPolicy } from '../src/authorization/policy.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { CallIdentity } from '../src/identity/call-identity.ts';
import type { EvidenceSummary, IssuedRecord, RecordInput } from '../src/ledger/index.ts';
import { maskId, type Logger } from '../src/logger.ts';
import type { SessionDecision, SessionRecord, StateStore } from '../src/store/types.ts';
import type { RecordingSummary } from './call-recording.ts';
import type { DecisionResult, PendingDecision } from './protocol.ts';
import { cosignSchema, decideSchema } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { SignalingError } from './handlers.ts';
import type { z } from 'zod';

export type DecideMessage = z.infer<typeof decideSchema>;
export type CosignMessage = z.infer<typeof cosignSchema>;

/** The store index of the sessions whose approval waits for a supervisor (shared by every node). */
export const COSIGN_INDEX = 'cosign';

export interface DecisionNotifier {
  /** A teller's approval now waits for a supervisor. */
  pending(d: PendingDecision): void;
  /** A supervisor answered (every supervisor console drops it from its list). */
  cosignClosed(c: { sessionId: string; verdict: 'cosign' | 'refuse'; supervisorId: string }): void;
  /** The record is issued: the teller learns the outcome, the bank's system gets its webhook. */
  issued(session: SessionRecord, result: DecisionResult): void;
}

export interface DecisionDeps {
  router: QueueRouter;
  store: StateStore;
  evidence: EvidenceSink;
  policy: AuthorizationPolicy;
  /** Signs the verification record into the ledger (src/ledger/server-ledger.ts). */
  issueRecord(input: RecordInput): Promise<IssuedRecord>;
  /** The call's identity checks, if they run: their summary is the record's evidence. */
  identityOf(sessionId: string): CallIdentity | undefined;
  /** The one-time code's outcome in this session, if one was issued. */
  oneTimeCodeOf(sessionId: string): Promise<EvidenceSummary['oneTimeCode'] | undefined>;
  /** Ends the call (the decision closes it) and resolves with its stored recording. */
  endCall(sessionId: string, actor: string): Promise<RecordingSummary | undefined>;
  notify: DecisionNotifier;
  log: Logger;
}

/**
 * A teller decides the call they are in.
 *
 * 1. Under the routing lock (so a session is decided once): the server's rules for approving
 *    (the teller's scope, the identity checks, the one-time code where the policy asks for it),
 *    then the teller's `decision.made` entry; the session moves to `decided`.
 * 2. The decision ends the call: the recording is finished and stored, and named in the record
 *    (so the record covers the whole call, and a supervisor can watch it before co-signing).
 * 3. Under dual control the approval waits for a supervisor (`awaiting_cosign`); otherwise the
 *    verification record is issued at once.
 */
export async function decideCall(deps: DecisionDeps, staff: StaffIdentity, sessionId: string, msg: DecideMessage): Promise<DecisionResult> {
  await deps.router.decide(sessionId, staff.id, `decision_${msg.decision}`, async (s) => {
    const scope = staff.approvalScope ?? 'consult_only';
    const approving = msg.decision === 'approved';
    if (approving && !SCOPE_BUSINESS_TYPES[scope].includes(s.businessType)) {
      throw new SignalingError('forbidden', `your approval scope (${scope}) does not cover ${s.businessType}: reject, or hand the customer to a colleague who may approve it`);
    }
    const identity = deps.identityOf(s.id);
    if (approving && s.reference) {
      // The server's own checks must hold: a match, adequate picture, liveness passed. A rejection
      // never needs them (the teller may reject for any listed reason).
      if (!identity) throw new SignalingError('invalid_state', 'cannot approve: the identity check has not run in this call');
      const blockers = identity.snapshot().blockers;
      if (blockers.length) throw new SignalingError('invalid_state', `cannot approve: ${blockers.join(', ')}`);
    }
    const rule = decisionRuleFor(deps.policy, s.businessType);
    const oneTimeCode = await deps.oneTimeCodeOf(s.id);
    if (approving && rule.oneTimeCode && oneTimeCode?.result !== 'verified') {
      throw new SignalingError('invalid_state', `cannot approve: ${s.businessType} needs the one-time code confirmed by the customer (${oneTimeCode ? oneTimeCode.result : 'none sent yet'})`);
    }
    if (identity) await identity.recordSnapshot(staff.id);
    const evidence: EvidenceSummary = { ...(identity?.summary() ?? {}), ...(oneTimeCode ? { oneTimeCode } : {}) };
    const dualControl = approving && needsDualControl(rule, s.amount);
    const entry = await deps.evidence.append({
      sessionId: s.id,
      type: 'decision.made',
      actor: staff.id,
      payload: { decision: msg.decision, reason: msg.reason, ...(msg.note ? { note: msg.note } : {}), evidence, dualControl },
    });
    const decision: SessionDecision = {
      decision: msg.decision,
      reason: msg.reason,
      tellerId: staff.id,
      tellerScope: scope,
      decidedAt: Date.now(),
      ...(msg.note ? { note: msg.note } : {}),
      entryIndex: entry.index,
      dualControl,
      status: 'finishing',
      evidence,
    };
    deps.log.info({ sessionId: s.id, decision: msg.decision, reason: msg.reason, dualControl, ledgerIndex: entry.index }, 'session decided by the teller');
    return decision;
  });

  const recording = await deps.endCall(sessionId, staff.id);
  const session = await deps.router.updateDecision(sessionId, async (s, d) => {
    const withRecording: SessionDecision = { ...d, evidence: recording ? { ...d.evidence, recording } : d.evidence };
    if (d.dualControl) return { ...withRecording, status: 'awaiting_cosign' };
    return issue(deps, s, withRecording);
  });
  const result = resultOf(session);
  if (result.status === 'awaiting_cosign') {
    await deps.store.addToIndex(COSIGN_INDEX, sessionId);
    deps.notify.pending(pendingView(session));
  } else {
    deps.notify.issued(session, result);
  }
  return result;
}

/**
 * A supervisor co-signs or refuses a teller's approval under dual control. Their answer is its own
 * ledger entry; then the record is issued: approved with both approvals named, or rejected
 * (`cosign_refused`) when the supervisor refused. Answered once, whoever is first.
 */
export async function cosignDecision(deps: DecisionDeps, supervisor: StaffIdentity, msg: CosignMessage): Promise<DecisionResult> {
  const session = await deps.router.updateDecision(msg.sessionId, async (s, d) => {
    if (d.status === 'issued') throw new SignalingError('invalid_state', 'this decision is already final');
    if (d.status !== 'awaiting_cosign') throw new SignalingError('invalid_state', 'this decision does not wait for a co-signature');
    if (supervisor.id === d.tellerId) throw new SignalingError('forbidden', 'the teller who approved cannot co-sign');
    const entry = await deps.evidence.append({
      sessionId: s.id,
      type: msg.verdict === 'cosign' ? 'decision.cosigned' : 'decision.cosign_refused',
      actor: supervisor.id,
      payload: { verdict: msg.verdict, tellerId: d.tellerId, tellerEntryIndex: d.entryIndex, ...(msg.note ? { note: msg.note } : {}) },
    });
    deps.log.info({ sessionId: s.id, supervisorId: supervisor.id, verdict: msg.verdict, ledgerIndex: entry.index }, 'decision co-signature');
    return issue(deps, s, { ...d, cosign: { supervisorId: supervisor.id, verdict: msg.verdict, at: Date.now(), entryIndex: entry.index, ...(msg.note ? { note: msg.note } : {}) } });
  });
  await deps.store.removeFromIndex(COSIGN_INDEX, msg.sessionId);
  const result = resultOf(session);
  deps.notify.cosignClosed({ sessionId: msg.sessionId, verdict: msg.verdict, supervisorId: supervisor.id });
  deps.notify.issued(session, result);
  return result;
}

/** The decisions waiting for a supervisor, oldest first. */
export async function pendingDecisions(deps: Pick<DecisionDeps, 'store'>): Promise<PendingDecision[]> {
  const ids = await deps.store.indexMembers(COSIGN_INDEX);
  const sessions = await Promise.all(ids.map((id) => deps.store.getSession(id)));
  return sessions
    .filter((s): s is SessionRecord => s?.decision?.status === 'awaiting_cosign')
    .sort((a, b) => a.decision!.decidedAt - b.decision!.decidedAt)
    .map(pendingView);
}

/** Signs the verification record of a decision that is final. */
async function issue(deps: DecisionDeps, s: SessionRecord, d: SessionDecision): Promise<SessionDecision> {
  const refused = d.cosign?.verdict === 'refuse';
  const approvals: NonNullable<RecordInput['approvals']> = [
    { role: 'teller', staffId: d.tellerId, decision: d.decision, at: d.decidedAt, entryIndex: d.entryIndex },
  ];
  if (d.cosign) approvals.push({ role: 'supervisor', staffId: d.cosign.supervisorId, decision: refused ? 'refused' : 'cosigned', at: d.cosign.at, entryIndex: d.cosign.entryIndex });
  const record = await deps.issueRecord({
    decision: refused ? 'rejected' : d.decision,
    reason: finalReason(d),
    sessionId: s.id,
    customerRef: s.customerRef,
    businessType: s.businessType,
    tellerId: d.tellerId,
    tellerScope: d.tellerScope,
    ...(d.cosign ? { supervisorId: d.cosign.supervisorId } : {}),
    approvals,
    evidence: d.evidence,
  });
  const { claims, kid: _kid, ...bundle } = record;
  deps.log.info({ sessionId: s.id, decision: claims.decision, recordId: claims.jti, ledgerIndex: record.index }, 'verification record issued');
  return { ...d, status: 'issued', recordId: claims.jti, record: bundle };
}

/** The record's reason: the teller's, unless the supervisor refused. */
export function finalReason(d: SessionDecision): string {
  return d.cosign?.verdict === 'refuse' ? 'cosign_refused' : d.reason;
}

function resultOf(s: SessionRecord): DecisionResult {
  const d = s.decision!;
  const refused = d.cosign?.verdict === 'refuse';
  return {
    sessionId: s.id,
    state: s.state,
    decision: refused ? 'rejected' : d.decision,
    status: d.status === 'issued' ? 'issued' : 'awaiting_cosign',
    recordId: d.recordId ?? null,
    ledgerIndex: d.record?.index ?? null,
    recording: d.evidence.recording ? { sha256: d.evidence.recording.sha256, durationMs: d.evidence.recording.durationMs } : null,
    supervisorId: d.cosign?.supervisorId ?? null,
  };
}

function pendingView(s: SessionRecord): PendingDecision {
  const d = s.decision!;
  return {
    sessionId: s.id,
    businessType: s.businessType,
    customerRef: maskId(s.customerRef),
    amount: s.amount ?? null,
    tellerId: d.tellerId,
    tellerScope: d.tellerScope,
    reason: d.reason,
    note: d.note ?? null,
    decidedAt: d.decidedAt,
    evidence: d.evidence as Record<string, unknown>,
    // Supervisors may fetch the recording of a decision waiting for them (src/http/compliance.ts).
    recordingUrl: d.evidence.recording ? `/api/compliance/sessions/${s.id}/recording` : null,
  };
}

import { SCOPE_BUSINESS_TYPES } from '../src/auth/staff-directory.ts';
import type { StaffIdentity } from '../src/auth/staff-tokens.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { CallIdentity } from '../src/identity/call-identity.ts';
import type { IssuedRecord, RecordInput } from '../src/ledger/index.ts';
import type { Logger } from '../src/logger.ts';
import type { DecisionResult } from './protocol.ts';
import { decideSchema } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { SignalingError } from './handlers.ts';
import type { z } from 'zod';

export type DecideMessage = z.infer<typeof decideSchema>;

export interface DecisionDeps {
  router: QueueRouter;
  evidence: EvidenceSink;
  /** Signs the verification record into the ledger (src/ledger/server-ledger.ts). */
  issueRecord(input: RecordInput): Promise<IssuedRecord>;
  /** The call's identity checks, if they run: their summary is the record's evidence. */
  identityOf(sessionId: string): CallIdentity | undefined;
  log: Logger;
}

/**
 * A teller decides the call they are in: the decision and the teller's note go into the
 * evidence, the verification record is issued (its own ledger entry, JWS, inclusion proof to a
 * signed checkpoint), and the session moves to `decided` carrying the record, which the bank's
 * system then fetches. All of it happens under the routing lock, so a session is decided once.
 */
export async function decideCall(deps: DecisionDeps, staff: StaffIdentity, sessionId: string, msg: DecideMessage): Promise<DecisionResult> {
  const session = await deps.router.decide(sessionId, staff.id, `decision_${msg.decision}`, async (s) => {
    const scope = staff.approvalScope ?? 'consult_only';
    if (msg.decision === 'approved' && !SCOPE_BUSINESS_TYPES[scope].includes(s.businessType)) {
      throw new SignalingError('forbidden', `your approval scope (${scope}) does not cover ${s.businessType}: reject, or hand the customer to a colleague who may approve it`);
    }
    const identity = deps.identityOf(s.id);
    if (msg.decision === 'approved' && s.reference) {
      // The server's own checks must hold: a match, adequate picture, liveness passed. A rejection
      // never needs them (the teller may reject for any listed reason).
      if (!identity) throw new SignalingError('invalid_state', 'cannot approve: the identity check has not run in this call');
      const blockers = identity.snapshot().blockers;
      if (blockers.length) throw new SignalingError('invalid_state', `cannot approve: ${blockers.join(', ')}`);
    }
    if (identity) await identity.recordSnapshot(staff.id);
    const evidence = identity?.summary() ?? {};
    await deps.evidence.append({
      sessionId: s.id,
      type: 'decision.made',
      actor: staff.id,
      payload: { decision: msg.decision, reason: msg.reason, ...(msg.note ? { note: msg.note } : {}), evidence },
    });
    const record = await deps.issueRecord({
      decision: msg.decision,
      reason: msg.reason,
      sessionId: s.id,
      customerRef: s.customerRef,
      businessType: s.businessType,
      tellerId: staff.id,
      tellerScope: scope,
      evidence,
    });
    const { claims, kid: _kid, ...bundle } = record;
    deps.log.info({ sessionId: s.id, decision: msg.decision, reason: msg.reason, recordId: claims.jti, ledgerIndex: record.index }, 'session decided');
    return { decision: msg.decision, reason: msg.reason, tellerId: staff.id, decidedAt: claims.iat * 1000, recordId: claims.jti, record: bundle };
  });
  const d = session.decision!;
  return { state: session.state, decision: d.decision, recordId: d.recordId, ledgerIndex: d.record.index };
}

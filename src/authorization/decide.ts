/**
 * The authorization decision: a pure function of the policy, the request, the verified record
 * and the time. It lists every rule that fails, not only the first, so the bank's system learns
 * everything that is missing from one answer.
 *
 * A record that does not verify says nothing trustworthy: only its problem is listed, with the
 * rules that depend on the request alone (amount, currency). An expired record whose signature,
 * entry and proof verify (the caller re-verified it within its lifetime) is still authentic, so
 * its claims are checked as well and every other failing rule is listed beside `record_expired`.
 *
 * Replay (a record already spent) is not decided here: it needs the ledger (see authorizer.ts).
 */
import type { RecordClaims } from '../ledger/index.ts';
import { parseAmount, type AuthorizationPolicy, type TransactionPolicy } from './policy.ts';

export const DENIAL_CODES = [
  'transaction_type_unknown',
  'record_invalid',
  'record_expired',
  'record_already_used',
  'decision_not_approved',
  'business_type_not_allowed',
  'customer_mismatch',
  'face_match_required',
  'liveness_required',
  'document_required',
  'recording_required',
  'one_time_code_required',
  'record_too_old',
  'amount_missing',
  'amount_not_allowed',
  'currency_missing',
  'currency_not_allowed',
  'approver_missing',
  'approver_scope_not_allowed',
  'dual_control_missing',
] as const;
export type DenialCode = (typeof DENIAL_CODES)[number];

export interface DenialReason {
  code: DenialCode;
  message: string;
}

export interface AuthorizationRequest {
  transactionType: string;
  /** Decimal string (policy.ts amountStringSchema). */
  amount?: string;
  /** ISO 4217. */
  currency?: string;
  customerRef: string;
}

/**
 * What the verifier said about the record. `RecordVerification` (verifyRecord) fits; a failed
 * check may carry `claims` only when they are authenticated (an expired but otherwise valid record).
 */
export type RecordCheck =
  | { ok: true; claims: RecordClaims }
  | { ok: false; problem: { kind: string; message: string }; claims?: RecordClaims };

export type AuthorizationDecision =
  | { allowed: true; dualControl: boolean }
  | { allowed: false; reasons: DenialReason[]; dualControl: boolean };

export function evaluate(policy: AuthorizationPolicy, request: AuthorizationRequest, record: RecordCheck, now: Date): AuthorizationDecision {
  const reasons: DenialReason[] = [];
  const deny = (code: DenialCode, message: string) => reasons.push({ code, message });
  const tx: TransactionPolicy | undefined = Object.hasOwn(policy.transactionTypes, request.transactionType)
    ? policy.transactionTypes[request.transactionType]
    : undefined;

  if (!record.ok) {
    if (record.problem.kind === 'expired') deny('record_expired', record.problem.message);
    else deny('record_invalid', `the verification record does not verify (${record.problem.kind}): ${record.problem.message}`);
  }
  if (!tx) {
    deny('transaction_type_unknown', `the policy has no transaction type ${request.transactionType}`);
    return { allowed: false, reasons, dualControl: false };
  }
  const claims = record.claims;

  if (claims) {
    if (claims.decision !== 'approved') deny('decision_not_approved', `the teller's decision was ${claims.decision}${claims.reason ? ` (${claims.reason})` : ''}, not approved`);
    if (!(tx.businessTypes as string[]).includes(claims.businessType)) {
      deny('business_type_not_allowed', `a ${claims.businessType} session does not authorize ${request.transactionType} (needs ${tx.businessTypes.join(' or ')})`);
    }
    // Neither reference is echoed: the other one may be another customer's.
    if (claims.customerRef !== request.customerRef) deny('customer_mismatch', 'the record is for another customer than the request names');

    const ev = claims.evidence;
    if (tx.requires.faceMatch && ev.faceMatch?.decision !== 'match') {
      deny('face_match_required', ev.faceMatch ? `the face match was ${ev.faceMatch.decision}, a match is required` : 'the record has no face match, one is required');
    }
    if (tx.requires.liveness && ev.liveness?.outcome !== 'passed') {
      deny('liveness_required', ev.liveness ? `the liveness check was ${ev.liveness.outcome}, a pass is required` : 'the record has no liveness check, a pass is required');
    }
    if (tx.requires.document && ev.document?.captured !== true) {
      deny('document_required', ev.document ? 'the record says the ID document was not captured' : 'the record has no ID document, one is required');
    }
    if (tx.requires.recording && !ev.recording) deny('recording_required', 'the record references no recording of the call, one is required');
    if (tx.requires.oneTimeCode && ev.oneTimeCode?.result !== 'verified') {
      deny('one_time_code_required', ev.oneTimeCode ? `the one-time code was ${ev.oneTimeCode.result}, a verified code is required` : 'the record has no one-time code check, one is required');
    }

    const ageS = Math.floor(now.getTime() / 1000) - claims.iat;
    if (ageS > tx.maxRecordAgeS) deny('record_too_old', `the record was issued ${ageS} s ago; ${request.transactionType} accepts records up to ${tx.maxRecordAgeS} s old`);
  }

  // Amount rules depend on the request alone.
  const { amount, currency } = request;
  if (!tx.amount) {
    if (amount !== undefined || currency !== undefined) deny('amount_not_allowed', `${request.transactionType} has no amount; send none`);
  } else {
    if (amount === undefined && (tx.amount.required || currency !== undefined)) deny('amount_missing', `${request.transactionType} needs an amount`);
    if (currency === undefined && (tx.amount.required || amount !== undefined)) deny('currency_missing', `${request.transactionType} needs a currency with the amount`);
    if (currency !== undefined && !tx.amount.currencies.includes(currency)) {
      deny('currency_not_allowed', `${currency} is not accepted for ${request.transactionType} (accepted: ${tx.amount.currencies.join(', ')})`);
    }
  }

  // Approvers: the teller, within an allowed scope; a second person (the supervisor) under dual control.
  let dualControl = tx.dualControl === 'always';
  let why = 'always';
  if (typeof tx.dualControl === 'object' && amount !== undefined && currency !== undefined) {
    const threshold = tx.dualControl.above[currency];
    if (threshold !== undefined && parseAmount(amount) > parseAmount(threshold)) {
      dualControl = true;
      why = `above ${threshold} ${currency}`;
    }
  }
  if (claims) {
    if (!claims.tellerId) deny('approver_missing', 'the record names no approving teller');
    const allowed = tx.approverScopes.join(' or ');
    if (claims.tellerScope === undefined) {
      // Records issued before approval scopes existed: fail closed.
      deny('approver_scope_not_allowed', `the record names no approval scope of the teller; ${request.transactionType} needs ${allowed}`);
    } else if (!(tx.approverScopes as string[]).includes(claims.tellerScope)) {
      deny('approver_scope_not_allowed', `the teller's approval scope ${claims.tellerScope} does not cover ${request.transactionType} (needs ${allowed})`);
    }
    if (dualControl) {
      if (!claims.supervisorId) deny('dual_control_missing', `${request.transactionType} needs dual control (${why}): the record names no co-signing supervisor`);
      else if (claims.supervisorId === claims.tellerId) deny('dual_control_missing', `${request.transactionType} needs dual control (${why}): the supervisor and the teller are the same person`);
    }
  }

  return reasons.length === 0 ? { allowed: true, dualControl } : { allowed: false, reasons, dualControl };
}

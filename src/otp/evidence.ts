/**
 * One-time-code evidence entries. They carry the challenge id, times, results and counts: never
 * the code, never what the customer typed.
 */
import type { EvidenceEntry } from '../evidence.ts';

export const OTP_EVIDENCE = { issued: 'otp.issued', result: 'otp.result' } as const;

/** How the code reaches the customer: the bank's system, via the signed `otp.requested` webhook. */
export const OTP_CHANNEL = 'bank_webhook';

export type OtpAttemptResult = 'verified' | 'wrong' | 'expired' | 'locked';

export function otpIssuedEvidence(
  sessionId: string,
  actor: string,
  issued: { challengeId: string; expiresAt: number; issuedCount: number },
): EvidenceEntry {
  return {
    sessionId,
    type: OTP_EVIDENCE.issued,
    actor,
    payload: {
      challengeId: issued.challengeId,
      expiresAt: new Date(issued.expiresAt).toISOString(),
      channel: OTP_CHANNEL,
      issuedCount: issued.issuedCount,
    },
  };
}

export function otpResultEvidence(
  sessionId: string,
  actor: string,
  outcome: { challengeId: string; result: OtpAttemptResult; attempts: number },
): EvidenceEntry {
  return {
    sessionId,
    type: OTP_EVIDENCE.result,
    actor,
    payload: { challengeId: outcome.challengeId, result: outcome.result, attempts: outcome.attempts },
  };
}

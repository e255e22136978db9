/**
 * One-time codes (issue 5): issue during the call, deliver through the bank's system (the
 * `otp.requested` webhook, src/webhooks/), verify what the customer types. Rules: codes.ts.
 *
 * Wiring (one line in app.ts):
 *   const otp = createOneTimeCodes(config, evidence, log.child({ part: 'otp' }));
 * then, on the teller's "send code":
 *   const { code, challengeId, expiresAt } = await otp.issue(sessionId, staff.id);
 *   await webhooks.enqueue(session.createdBy, { type: 'otp.requested', data: { sessionId, customerRef, code, expiresAt } });
 * and on the customer's code field:
 *   const { result, attemptsLeft } = await otp.verify(sessionId, msg.code);
 */
import type { Config } from '../config.ts';
import type { EvidenceSink } from '../evidence.ts';
import type { Logger } from '../logger.ts';
import { OneTimeCodes, type OneTimeCodesOptions } from './codes.ts';

export { OneTimeCodes, OTP_DEFAULTS, OtpError, otpInputSchema, type IssuedCode, type OneTimeCodesOptions, type OtpErrorCode, type VerifyOutcome, type VerifyResult } from './codes.ts';
export { otpConfigSchema, type OtpConfig } from './config.ts';
export { OTP_CHANNEL, OTP_EVIDENCE, otpIssuedEvidence, otpResultEvidence, type OtpAttemptResult } from './evidence.ts';
export { MemoryOtpStore, otpStateSchema, type OtpState, type OtpStateStore } from './store.ts';

export function otpOptionsFromConfig(config: Pick<Config, 'OTP_TTL_S' | 'OTP_SECRET'>): OneTimeCodesOptions {
  return { ttlMs: config.OTP_TTL_S * 1000, ...(config.OTP_SECRET ? { secret: config.OTP_SECRET } : {}) };
}

export function createOneTimeCodes(config: Pick<Config, 'OTP_TTL_S' | 'OTP_SECRET'>, evidence: EvidenceSink, log: Logger): OneTimeCodes {
  return new OneTimeCodes(otpOptionsFromConfig(config), evidence, log);
}

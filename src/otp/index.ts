/**
 * One-time codes (issue 5): issue during the call, deliver through the bank's system (the
 * `otp.requested` webhook, src/webhooks/), verify what the customer types. Rules: codes.ts.
 *
 * Wiring (app.ts):
 *   const otp = await createOneTimeCodes(config, evidence, log.child({ part: 'otp' }));
 *   …and at shutdown: await otp.close();
 * State lives in memory with one node, in Redis (redis-store.ts, under REDIS_KEY_PREFIX) when
 * REDIS_URL is set, so a code issued on one node verifies on another; OTP_SECRET, the HMAC key,
 * must then be the same on every node (src/config.ts refuses REDIS_URL without it).
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
import { RedisOtpStore } from './redis-store.ts';

export { OneTimeCodes, OTP_DEFAULTS, OtpError, otpInputSchema, type IssuedCode, type OneTimeCodesOptions, type OtpErrorCode, type VerifyOutcome, type VerifyResult } from './codes.ts';
export { otpConfigSchema, type OtpConfig } from './config.ts';
export { OTP_CHANNEL, OTP_EVIDENCE, otpIssuedEvidence, otpResultEvidence, type OtpAttemptResult } from './evidence.ts';
export { MemoryOtpStore, otpStateSchema, type OtpState, type OtpStateStore } from './store.ts';
export { OtpStoreConflictError, OtpStoreDataError, OtpStoreUnavailableError, RedisOtpStore, type RedisOtpStoreOptions } from './redis-store.ts';

export function otpOptionsFromConfig(config: Pick<Config, 'OTP_TTL_S' | 'OTP_SECRET'>): OneTimeCodesOptions {
  return { ttlMs: config.OTP_TTL_S * 1000, ...(config.OTP_SECRET ? { secret: config.OTP_SECRET } : {}) };
}

/** The one-time codes the configuration asks for: in Redis when REDIS_URL is set (rejects when it cannot connect), else in memory. */
export async function createOneTimeCodes(
  config: Pick<Config, 'OTP_TTL_S' | 'OTP_SECRET' | 'REDIS_URL' | 'REDIS_KEY_PREFIX'>,
  evidence: EvidenceSink,
  log: Logger,
): Promise<OneTimeCodes> {
  const options = otpOptionsFromConfig(config);
  if (!config.REDIS_URL) return new OneTimeCodes(options, evidence, log);
  // loadConfig refuses this too; checked again for callers that build the config themselves.
  if (!config.OTP_SECRET) throw new Error('OTP_SECRET is required with REDIS_URL: every node must hash one-time codes with the same key');
  const store = await RedisOtpStore.open({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX, log });
  return new OneTimeCodes({ ...options, store }, evidence, log);
}

/**
 * One-time codes for business types whose policy asks for one: the server issues a 6-digit code
 * during the call, the bank's system delivers it (signed `otp.requested` webhook) to the
 * customer's registered phone or e-mail, the customer types it on the call page.
 *
 * Public API:
 *   new OneTimeCodes(options, evidence, log)
 *   codes.issue(sessionId, actor) → Promise<{ code, challengeId, expiresAt }>   (expiresAt: epoch ms)
 *       throws OtpError('too_many_codes' | 'issue_too_soon' | 'invalid_session')
 *       appends `otp.issued` (no code) before resolving
 *   codes.verify(sessionId, input: unknown, actor = 'customer') → Promise<{ result, attemptsLeft, challengeId }>
 *       result: 'verified' | 'wrong' | 'expired' | 'locked' | 'no_code' | 'invalid_input'
 *       appends `otp.result` (no code, no input) for every counted attempt and for the first
 *       attempt after expiry
 *   codes.forget(sessionId) → Promise<void>  (the session ended)
 *   codes.close() → Promise<void>  (shutdown: closes the store, e.g. its Redis connection)
 *
 * Decisions, so the wiring and the tests agree:
 * - Only an HMAC-SHA256 of the code is kept (key: OTP_SECRET or a random per-process key, over
 *   session id, challenge id and code), compared in constant time. The code itself is returned
 *   once, by issue(), for the webhook, and never stored, logged or put in evidence.
 * - A code verifies once: after 'verified' the challenge is used up and a second verify, even
 *   with the same code, answers 'no_code' (a replayed code proves nothing new).
 * - Input: everything that is not exactly 6 ASCII digits once whitespace is removed (so
 *   "123 456" is accepted) answers 'invalid_input' and is NOT counted as an attempt: it cannot
 *   match any code, so it gives a guesser nothing, while a customer's mistyped extra digit does
 *   not burn one of their five tries. It is not recorded as evidence either.
 * - At most maxAttempts (5) counted attempts per code; the 5th wrong one answers 'locked' and
 *   so does every later try. After expiry every try answers 'expired' (not counted).
 * - A new issue() replaces the previous code (which then answers 'wrong' like any other
 *   number) and restarts the attempt count; at most maxCodesPerSession (3) codes per session,
 *   at least minIssueIntervalMs apart, so a session allows at most 15 guesses in total.
 */
import { createHmac, randomBytes, randomInt, randomUUID, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { EvidenceSink } from '../evidence.ts';
import type { Logger } from '../logger.ts';
import { otpIssuedEvidence, otpResultEvidence, type OtpAttemptResult } from './evidence.ts';
import { MemoryOtpStore, type OtpState, type OtpStateStore } from './store.ts';

export interface OneTimeCodesOptions {
  /** Lifetime of a code (OTP_TTL_S · 1000). Default 5 minutes. */
  ttlMs?: number;
  /** HMAC key for the stored hashes (OTP_SECRET). Default: 32 random bytes for this process. */
  secret?: string;
  maxAttempts?: number;
  maxCodesPerSession?: number;
  minIssueIntervalMs?: number;
  /** How long a session's counters are kept after its last change. Default 24 h. */
  retentionMs?: number;
  /** Default: in memory (one node). Several nodes: a RedisOtpStore (index.ts picks it by REDIS_URL). close() closes it. */
  store?: OtpStateStore;
  now?: () => number;
}

export const OTP_DEFAULTS = {
  ttlMs: 5 * 60_000,
  maxAttempts: 5,
  maxCodesPerSession: 3,
  minIssueIntervalMs: 10_000,
  retentionMs: 24 * 3600_000,
} as const;

export type VerifyResult = OtpAttemptResult | 'no_code' | 'invalid_input';

export interface VerifyOutcome {
  result: VerifyResult;
  /** Counted attempts left on the current code (0 when there is none to try). */
  attemptsLeft: number;
  /** The challenge the attempt was made against, if there is one. */
  challengeId: string | null;
}

export interface IssuedCode {
  /** Six ASCII digits: for the otp.requested webhook only. */
  code: string;
  challengeId: string;
  /** Epoch ms. */
  expiresAt: number;
}

export type OtpErrorCode = 'too_many_codes' | 'issue_too_soon' | 'invalid_session';

export class OtpError extends Error {
  constructor(
    readonly code: OtpErrorCode,
    message: string,
    /** For 'issue_too_soon': when issuing is allowed again. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'OtpError';
  }
}

const sessionIdSchema = z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/);
/** What the customer typed: bounded before anything else, then 6 ASCII digits once whitespace is removed. */
export const otpInputSchema = z
  .string()
  .max(64)
  .transform((s) => s.replace(/\s+/g, ''))
  .pipe(z.string().regex(/^[0-9]{6}$/));

export interface OtpStatus {
  result: 'verified' | 'wrong' | 'expired' | 'locked' | 'no_code';
  attempts: number;
}

export class OneTimeCodes {
  private readonly ttlMs: number;
  private readonly maxAttempts: number;
  private readonly maxCodes: number;
  private readonly minIntervalMs: number;
  private readonly retentionMs: number;
  private readonly key: Buffer;
  private readonly store: OtpStateStore;
  private readonly now: () => number;

  constructor(
    options: OneTimeCodesOptions,
    private readonly evidence: EvidenceSink,
    private readonly log: Logger,
  ) {
    this.ttlMs = options.ttlMs ?? OTP_DEFAULTS.ttlMs;
    this.maxAttempts = options.maxAttempts ?? OTP_DEFAULTS.maxAttempts;
    this.maxCodes = options.maxCodesPerSession ?? OTP_DEFAULTS.maxCodesPerSession;
    this.minIntervalMs = options.minIssueIntervalMs ?? OTP_DEFAULTS.minIssueIntervalMs;
    this.retentionMs = Math.max(options.retentionMs ?? OTP_DEFAULTS.retentionMs, this.ttlMs);
    for (const [k, v] of Object.entries({ ttlMs: this.ttlMs, maxAttempts: this.maxAttempts, maxCodesPerSession: this.maxCodes })) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer`);
    }
    if (!Number.isSafeInteger(this.minIntervalMs) || this.minIntervalMs < 0) throw new RangeError('minIssueIntervalMs must be a non-negative integer');
    if (options.secret !== undefined && options.secret.length < 32) throw new RangeError('the OTP secret must be at least 32 characters');
    this.key = options.secret !== undefined ? Buffer.from(options.secret, 'utf8') : randomBytes(32);
    this.now = options.now ?? Date.now;
    this.store = options.store ?? new MemoryOtpStore(this.now);
  }

  /** Issues a new code for the session (replacing any previous one) and records `otp.issued`. */
  async issue(sessionId: string, actor: string): Promise<IssuedCode> {
    this.checkSession(sessionId);
    const code = String(randomInt(0, 1_000_000)).padStart(6, '0');
    const challengeId = randomUUID();
    const codeHash = this.hash(sessionId, challengeId, code);
    const now = this.now();
    type Step = { error: 'too_many_codes' } | { error: 'issue_too_soon'; retryAfterMs: number } | { issued: number; expiresAt: number };
    const outcome = await this.store.update<Step>(sessionId, this.retentionMs, (cur) => {
      const issued = cur?.issued ?? 0;
      if (issued >= this.maxCodes) return { result: { error: 'too_many_codes' } };
      if (cur && now - cur.lastIssuedAt < this.minIntervalMs) return { result: { error: 'issue_too_soon', retryAfterMs: cur.lastIssuedAt + this.minIntervalMs - now } };
      const next: OtpState = { challengeId, codeHash, status: 'open', expiresAt: now + this.ttlMs, attempts: 0, issued: issued + 1, lastIssuedAt: now };
      return { next, result: { issued: next.issued, expiresAt: next.expiresAt } };
    });
    if ('error' in outcome) {
      this.log.warn({ sessionId, error: outcome.error }, 'one-time code not issued');
      if (outcome.error === 'too_many_codes') throw new OtpError('too_many_codes', `at most ${this.maxCodes} codes per session`);
      throw new OtpError('issue_too_soon', 'a code was just sent: wait before sending another', 'retryAfterMs' in outcome ? outcome.retryAfterMs : undefined);
    }
    await this.evidence.append(otpIssuedEvidence(sessionId, actor, { challengeId, expiresAt: outcome.expiresAt, issuedCount: outcome.issued }));
    this.log.info({ sessionId, challengeId, issuedCount: outcome.issued, expiresAt: outcome.expiresAt }, 'one-time code issued');
    return { code, challengeId, expiresAt: outcome.expiresAt };
  }

  /** Checks what the customer typed against the session's current code (see the rules at the top). */
  async verify(sessionId: string, input: unknown, actor = 'customer'): Promise<VerifyOutcome> {
    this.checkSession(sessionId);
    const parsed = otpInputSchema.safeParse(input);
    const now = this.now();
    type Step = { outcome: VerifyOutcome; record: boolean; attempts: number };
    const { outcome, record, attempts } = await this.store.update<Step>(sessionId, this.retentionMs, (cur) => {
      const none: Step = { outcome: { result: 'no_code', attemptsLeft: 0, challengeId: cur?.challengeId ?? null }, record: false, attempts: cur?.attempts ?? 0 };
      if (!cur || !cur.challengeId) return { result: none };
      const left = (s: OtpState) => (s.status === 'open' ? Math.max(0, this.maxAttempts - s.attempts) : 0);
      if (!parsed.success) return { result: { outcome: { result: 'invalid_input', attemptsLeft: left(cur), challengeId: cur.challengeId }, record: false, attempts: cur.attempts } };
      if (cur.status === 'verified') return { result: none };
      if (cur.status === 'locked' || cur.status === 'expired') {
        return { result: { outcome: { result: cur.status, attemptsLeft: 0, challengeId: cur.challengeId }, record: false, attempts: cur.attempts } };
      }
      if (now >= cur.expiresAt) {
        const next: OtpState = { ...cur, status: 'expired', codeHash: null };
        return { next, result: { outcome: { result: 'expired', attemptsLeft: 0, challengeId: cur.challengeId }, record: true, attempts: cur.attempts } };
      }
      const attempts = cur.attempts + 1;
      const match = cur.codeHash !== null && timingSafeEqual(Buffer.from(cur.codeHash, 'hex'), this.hash(sessionId, cur.challengeId, parsed.data, 'buffer'));
      let next: OtpState;
      let result: VerifyResult;
      if (match) [next, result] = [{ ...cur, status: 'verified', codeHash: null, attempts }, 'verified'];
      else if (attempts >= this.maxAttempts) [next, result] = [{ ...cur, status: 'locked', codeHash: null, attempts }, 'locked'];
      else [next, result] = [{ ...cur, attempts }, 'wrong'];
      return { next, result: { outcome: { result, attemptsLeft: left(next), challengeId: cur.challengeId }, record: true, attempts } };
    });
    if (record && outcome.challengeId) {
      await this.evidence.append(otpResultEvidence(sessionId, actor, { challengeId: outcome.challengeId, result: outcome.result as OtpAttemptResult, attempts }));
    }
    this.log.info({ sessionId, challengeId: outcome.challengeId, result: outcome.result, attemptsLeft: outcome.attemptsLeft }, 'one-time code checked');
    return outcome;
  }

  /**
   * Where the session's code stands, for the decision and the record (never the code): verified,
   * locked, expired, 'wrong' (tried, not yet right) or 'no_code' (not typed yet). Undefined: no
   * code was ever issued in this session.
   */
  async status(sessionId: string): Promise<OtpStatus | undefined> {
    this.checkSession(sessionId);
    const now = this.now();
    return this.store.update<OtpStatus | undefined>(sessionId, this.retentionMs, (cur) => {
      if (!cur?.challengeId) return { result: undefined };
      if (cur.status !== 'open') return { result: { result: cur.status, attempts: cur.attempts } };
      if (now >= cur.expiresAt) return { result: { result: 'expired' as const, attempts: cur.attempts } };
      return { result: { result: cur.attempts > 0 ? ('wrong' as const) : ('no_code' as const), attempts: cur.attempts } };
    });
  }

  async forget(sessionId: string): Promise<void> {
    await this.store.delete(sessionId);
  }

  /** Shutdown: closes the store (the Redis store's connection); no call may follow. */
  async close(): Promise<void> {
    await this.store.close?.();
  }

  private checkSession(sessionId: string): void {
    if (!sessionIdSchema.safeParse(sessionId).success) throw new OtpError('invalid_session', 'sessionId: expected printable ASCII without spaces, 1–128 characters');
  }

  private hash(sessionId: string, challengeId: string, code: string): string;
  private hash(sessionId: string, challengeId: string, code: string, as: 'buffer'): Buffer;
  private hash(sessionId: string, challengeId: string, code: string, as?: 'buffer'): string | Buffer {
    const d = createHmac('sha256', this.key).update(`${sessionId}\n${challengeId}\n${code}`).digest();
    return as === 'buffer' ? d : d.toString('hex');
  }
}

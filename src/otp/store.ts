/**
 * Where one-time-code state lives, behind one small interface: here in memory (one node), or in
 * Redis for several nodes (redis-store.ts, chosen by REDIS_URL in index.ts). The state holds an
 * HMAC of the code, never the code.
 *
 * update() is the only write: it must run `fn` atomically against the session's current state
 * (the memory store does, being single-threaded and synchronous; the Redis store reads, runs `fn`,
 * writes with a compare-and-set script and re-runs `fn` on conflict, so `fn` must be pure).
 * Everything read back from a shared store is parsed with otpStateSchema.
 */
import { z } from 'zod';

export const otpStateSchema = z
  .object({
    /** The current challenge, or null when none was issued yet. */
    challengeId: z.string().uuid().nullable(),
    /** Hex HMAC-SHA256 of the current code; null once it is used up (verified, locked, expired). */
    codeHash: z.string().regex(/^[0-9a-f]{64}$/).nullable(),
    status: z.enum(['open', 'verified', 'locked', 'expired']),
    /** Epoch ms. */
    expiresAt: z.number().int().nonnegative(),
    /** Attempts counted against the current challenge. */
    attempts: z.number().int().nonnegative(),
    /** Codes issued in this session so far (the rate limit). */
    issued: z.number().int().nonnegative(),
    lastIssuedAt: z.number().int().nonnegative(),
  })
  .strict();
export type OtpState = z.infer<typeof otpStateSchema>;

export interface OtpStateStore {
  /**
   * Atomically: read the session's state, compute `{ next, result }` with `fn` (pure), store
   * `next` for `retentionMs` from now (undefined: unchanged), return `result`.
   */
  update<T>(sessionId: string, retentionMs: number, fn: (current: OtpState | undefined) => { next?: OtpState; result: T }): Promise<T>;
  delete(sessionId: string): Promise<void>;
  /** Releases what the store holds (the Redis connection); the store is unusable afterwards. */
  close?(): Promise<void>;
}

/** One node: a Map, swept of entries past their retention at most once a minute. */
export class MemoryOtpStore implements OtpStateStore {
  private readonly states = new Map<string, { state: OtpState; dropAt: number }>();
  private lastSweep = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async update<T>(sessionId: string, retentionMs: number, fn: (current: OtpState | undefined) => { next?: OtpState; result: T }): Promise<T> {
    const now = this.now();
    this.sweep(now);
    const held = this.states.get(sessionId);
    const current = held && held.dropAt > now ? held.state : undefined;
    const { next, result } = fn(current);
    if (next) this.states.set(sessionId, { state: { ...next }, dropAt: now + retentionMs });
    return result;
  }

  async delete(sessionId: string): Promise<void> {
    this.states.delete(sessionId);
  }

  get size(): number {
    return this.states.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    for (const [k, v] of this.states) if (v.dropAt <= now) this.states.delete(k);
  }
}

/**
 * One-time-code settings from the environment, spread into src/config.ts's schema.
 */
import { z } from 'zod';

export const otpConfigSchema = z.object({
  /** Lifetime of a one-time code, in seconds. */
  OTP_TTL_S: z.coerce.number().int().min(30).max(1800).default(300),
  /**
   * HMAC key for the stored code hashes. Unset: a random key per process, which is right while
   * the codes live in this process's memory. Required with REDIS_URL (src/config.ts checks it):
   * the codes' state is then shared in Redis, and every node must hash with the same key.
   */
  OTP_SECRET: z.string().min(32).optional(),
});

export type OtpConfig = z.infer<typeof otpConfigSchema>;

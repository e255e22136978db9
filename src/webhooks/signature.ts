/**
 * Webhook signatures, for us (signing) and for the bank's receiver (verifying).
 *
 *   Videoteller-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, `${t}.${rawBody}`)>
 *
 * The timestamp is inside the MAC, so a captured request cannot be replayed outside the
 * tolerance window; within it, the receiver dedupes on the Videoteller-Delivery header.
 * A header may carry several v1 values (e.g. while a secret is rotated): one match suffices.
 *
 * Public API:
 *   signWebhook(secret, rawBody, timestampS) → header value
 *   verifyWebhookSignature(secret, header, rawBody, { toleranceS?, nowS? })
 *     → { ok: true, timestamp } | { ok: false, error: 'malformed_header' | 'timestamp_out_of_window' | 'signature_mismatch' }
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Videoteller-Signature';
export const EVENT_HEADER = 'Videoteller-Event';
export const DELIVERY_HEADER = 'Videoteller-Delivery';

/** Default replay window a receiver should use: five minutes either side. */
export const DEFAULT_TOLERANCE_S = 300;

export type SignatureError = 'malformed_header' | 'timestamp_out_of_window' | 'signature_mismatch';
export type SignatureCheck = { ok: true; timestamp: number } | { ok: false; error: SignatureError };

function mac(secret: string, timestampS: number, rawBody: string | Uint8Array): Buffer {
  const h = createHmac('sha256', secret);
  h.update(`${timestampS}.`);
  h.update(rawBody);
  return h.digest();
}

/** The Videoteller-Signature header value for `rawBody` (the exact bytes sent) at `timestampS`. */
export function signWebhook(secret: string, rawBody: string | Uint8Array, timestampS: number): string {
  if (!Number.isSafeInteger(timestampS) || timestampS < 0) throw new RangeError('timestampS must be a non-negative integer');
  return `t=${timestampS},v1=${mac(secret, timestampS, rawBody).toString('hex')}`;
}

/**
 * Checks a Videoteller-Signature header against the raw request body (the bytes as received,
 * before any JSON parsing). Constant-time comparison; the timestamp must be within
 * `toleranceS` (default 300) of `nowS` (default: now) in either direction.
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined | null,
  rawBody: string | Uint8Array,
  opts: { toleranceS?: number; nowS?: number } = {},
): SignatureCheck {
  if (typeof header !== 'string' || header.length > 4096) return { ok: false, error: 'malformed_header' };
  let timestamp: number | undefined;
  const candidates: Buffer[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 1) return { ok: false, error: 'malformed_header' };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') {
      if (timestamp !== undefined || !/^\d{1,12}$/.test(value)) return { ok: false, error: 'malformed_header' };
      timestamp = Number(value);
    } else if (key === 'v1') {
      if (!/^[0-9a-f]{64}$/i.test(value)) return { ok: false, error: 'malformed_header' };
      candidates.push(Buffer.from(value, 'hex'));
    }
    // Unknown schemes (a future v2) are ignored so receivers keep working during an upgrade.
  }
  if (timestamp === undefined || candidates.length === 0) return { ok: false, error: 'malformed_header' };
  const toleranceS = opts.toleranceS ?? DEFAULT_TOLERANCE_S;
  const nowS = opts.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(nowS - timestamp) > toleranceS) return { ok: false, error: 'timestamp_out_of_window' };
  const expected = mac(secret, timestamp, rawBody);
  let match = false;
  // Compare against every candidate (no early exit) so timing does not reveal which matched.
  for (const c of candidates) if (timingSafeEqual(c, expected)) match = true;
  return match ? { ok: true, timestamp } : { ok: false, error: 'signature_mismatch' };
}

import { createHash, randomBytes } from 'node:crypto';

/**
 * Customer tokens are 256-bit random strings handed out once; the store keeps only their
 * SHA-256, so a leaked store snapshot cannot be used to join a call.
 */
export function newCustomerToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashCustomerToken(token) };
}

export function hashCustomerToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * The bank's systems authenticate with API keys ("id:secret" pairs from API_KEYS). Only SHA-256
 * digests are kept in memory, compared in constant time; the key id (never the secret) is logged.
 */
export class ApiKeys {
  private readonly digests: { id: string; digest: Buffer }[];

  constructor(spec: string) {
    this.digests = spec
      .split(',')
      .map((pair) => pair.trim())
      .filter(Boolean)
      .map((pair) => {
        const at = pair.indexOf(':');
        if (at < 1 || at === pair.length - 1) throw new Error('API_KEYS: expected comma-separated "id:secret" pairs');
        const secret = pair.slice(at + 1);
        if (secret.length < 16) throw new Error(`API_KEYS: the secret of key "${pair.slice(0, at)}" is shorter than 16 characters`);
        return { id: pair.slice(0, at), digest: sha256(secret) };
      });
    if (this.digests.length === 0) throw new Error('API_KEYS: no key given');
  }

  /** Returns the key id for a presented secret, or undefined. */
  identify(secret: string | undefined): string | undefined {
    if (!secret) return undefined;
    const digest = sha256(secret);
    let found: string | undefined;
    for (const k of this.digests) if (timingSafeEqual(k.digest, digest)) found = k.id;
    return found;
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

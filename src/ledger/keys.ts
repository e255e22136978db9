/**
 * Public signing keys as JWKs (RFC 8037 OKP/Ed25519) with RFC 7638 thumbprints as key ids, and
 * the matching signed-note verifier keys. Portable.
 */
import { fromBase64Url, toBase64Url, utf8 } from './bytes.ts';
import { noteKey, type NoteKey } from './note.ts';
import { sha256 } from './sha256.ts';

export interface Ed25519PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

export interface Jwks {
  keys: Ed25519PublicJwk[];
}

export interface LedgerPublicKey {
  kid: string;
  publicKey: Uint8Array;
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key: the key id. */
export function ed25519Thumbprint(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  return toBase64Url(sha256(utf8(`{"crv":"Ed25519","kty":"OKP","x":"${toBase64Url(publicKey)}"}`)));
}

export function publicJwk(publicKey: Uint8Array): Ed25519PublicJwk {
  return { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(publicKey), kid: ed25519Thumbprint(publicKey), alg: 'EdDSA', use: 'sig' };
}

/**
 * Reads the Ed25519 keys of a JWKS (other key types are skipped). A key whose `kid` is not its
 * thumbprint is refused: every key id here is derived from the key, so it cannot be confused.
 */
export function keysFromJwks(jwks: unknown): LedgerPublicKey[] {
  const list = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new TypeError('a JWKS is an object with a "keys" array');
  const out: LedgerPublicKey[] = [];
  for (const k of list as Record<string, unknown>[]) {
    if (k?.kty !== 'OKP' || k.crv !== 'Ed25519') continue;
    if (typeof k.x !== 'string') throw new TypeError('Ed25519 JWK without "x"');
    let publicKey: Uint8Array;
    try {
      publicKey = fromBase64Url(k.x);
    } catch {
      throw new TypeError('Ed25519 JWK "x" is not base64url');
    }
    if (publicKey.length !== 32) throw new TypeError('Ed25519 JWK "x" is not 32 bytes');
    const kid = ed25519Thumbprint(publicKey);
    if (k.kid !== undefined && k.kid !== kid) throw new TypeError(`JWK kid ${String(k.kid)} is not the key's RFC 7638 thumbprint`);
    out.push({ kid, publicKey });
  }
  return out;
}

/** The signed-note keys for checkpoints of `origin` (the key name is the origin). */
export function noteKeysFor(origin: string, keys: readonly LedgerPublicKey[]): NoteKey[] {
  return keys.map((k) => noteKey(origin, k.publicKey));
}

/**
 * Node's native (OpenSSL) SHA-256 and Ed25519 for the server and the CLI: faster than the
 * portable code (sha256.ts, WebCrypto) and synchronous. Kept apart so portable modules never
 * import node:crypto.
 */
import * as nodeCrypto from 'node:crypto';
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { Ed25519Verify } from './ed25519.ts';
import type { HashFn } from './sha256.ts';

/** crypto.hash (Node >= 20.12): one call, no Hash object; about 1.6x faster on small inputs. */
const oneShot = (nodeCrypto as unknown as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;

export const nodeSha256: HashFn = oneShot
  ? (data) => {
      const digest = oneShot('sha256', data, 'buffer');
      return new Uint8Array(digest.buffer, digest.byteOffset, digest.length);
    }
  : (data) => {
      const digest = createHash('sha256').update(data).digest();
      return new Uint8Array(digest.buffer, digest.byteOffset, digest.length);
    };

/** DER SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function ed25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  if (publicKey.length !== 32) throw new TypeError('an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
}

const keyObjects = new Map<string, KeyObject>();

export const nodeEd25519Verify: Ed25519Verify = (publicKey, message, signature) => {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const id = Buffer.from(publicKey).toString('base64');
  let key = keyObjects.get(id);
  if (!key) {
    try {
      key = ed25519PublicKeyObject(publicKey);
    } catch {
      return false;
    }
    if (keyObjects.size > 64) keyObjects.clear();
    keyObjects.set(id, key);
  }
  return verify(null, message, key, signature);
};

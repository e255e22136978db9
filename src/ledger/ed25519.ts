/**
 * Ed25519 verification through WebCrypto (globalThis.crypto.subtle: Node >= 20 and current
 * browsers), so the verifier stays portable. Node code can pass a faster synchronous verifier
 * (node-crypto.ts); both are checked against RFC 8032 in the tests.
 */

/** Returns whether `signature` is a valid Ed25519 signature of `message` by `publicKey` (32 bytes). */
export type Ed25519Verify = (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => Promise<boolean> | boolean;

const imported = new Map<string, Promise<CryptoKey>>();

function keyCacheId(publicKey: Uint8Array): string {
  let s = '';
  for (const b of publicKey) s += String.fromCharCode(b);
  return s;
}

export const webCryptoEd25519Verify: Ed25519Verify = async (publicKey, message, signature) => {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new Error('WebCrypto (crypto.subtle) is not available: pass an Ed25519 verifier');
  const id = keyCacheId(publicKey);
  let key = imported.get(id);
  if (!key) {
    key = subtle.importKey('raw', publicKey as BufferSource, { name: 'Ed25519' }, false, ['verify']);
    if (imported.size > 64) imported.clear();
    imported.set(id, key);
  }
  try {
    return await subtle.verify({ name: 'Ed25519' }, await key, signature as BufferSource, message as BufferSource);
  } catch {
    imported.delete(id);
    return false;
  }
};

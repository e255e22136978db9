/**
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures, the envelope of checkpoints.
 * Portable (no Node API). Format and key encodings follow golang.org/x/mod/sumdb/note, whose
 * published example the tests reproduce byte for byte.
 *
 *   <text ending in \n>\n— <key name> base64(key ID (4 bytes, big-endian) || signature)\n ...
 *
 *   key ID  = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]
 *   verifier key = <name>+<key ID, 8 hex digits>+base64(0x01 || public key)
 */
import { bytesEqual, concatBytes, fromBase64, fromUtf8, toBase64, utf8 } from './bytes.ts';
import { webCryptoEd25519Verify, type Ed25519Verify } from './ed25519.ts';
import { sha256 } from './sha256.ts';

export const SIG_TYPE_ED25519 = 0x01;
/** Verifiers must accept at least 16 signatures; more than this is refused as malformed. */
export const MAX_NOTE_SIGNATURES = 100;
const SIG_PREFIX = '\u2014 ';

export type NoteErrorKind = 'malformed' | 'unverified' | 'invalid_signature' | 'ambiguous_key' | 'bad_key';

export class NoteError extends Error {
  constructor(readonly kind: NoteErrorKind, message: string) {
    super(message);
    this.name = 'NoteError';
  }
}

export interface NoteSignature {
  name: string;
  keyId: number;
  /** base64(key ID || signature), as on the signature line. */
  base64: string;
}

export interface NoteKey {
  name: string;
  keyId: number;
  publicKey: Uint8Array;
}

export interface OpenedNote {
  text: string;
  /** Signatures by the given keys, all verified. */
  verified: NoteSignature[];
  /** Signatures by keys not given (ignored, as the spec requires). */
  unverified: NoteSignature[];
}

/** Key names are non-empty, with no Unicode space and no '+'. */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name) && !hasControl(name);
}

function hasControl(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 && c !== 0x0a) return true;
  }
  return false;
}

export function noteKeyId(name: string, publicKey: Uint8Array): number {
  const digest = sha256(concatBytes(utf8(name), new Uint8Array([0x0a, SIG_TYPE_ED25519]), publicKey));
  return ((digest[0]! << 24) | (digest[1]! << 16) | (digest[2]! << 8) | digest[3]!) >>> 0;
}

export function noteKey(name: string, publicKey: Uint8Array): NoteKey {
  if (!isValidKeyName(name)) throw new NoteError('bad_key', `invalid key name ${JSON.stringify(name)}`);
  if (publicKey.length !== 32) throw new NoteError('bad_key', 'an Ed25519 public key is 32 bytes');
  return { name, keyId: noteKeyId(name, publicKey), publicKey };
}

const hex8 = (n: number) => n.toString(16).padStart(8, '0');

/** The verifier key string, e.g. `videoteller.local/ledger+1a2b3c4d+AQ...`. */
export function formatVerifierKey(key: NoteKey): string {
  return `${key.name}+${hex8(key.keyId)}+${toBase64(concatBytes(new Uint8Array([SIG_TYPE_ED25519]), key.publicKey))}`;
}

/** Parses and checks a verifier key string (name, key ID matching the key, Ed25519 type). */
export function parseVerifierKey(vkey: string): NoteKey {
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) throw new NoteError('bad_key', 'malformed verifier key');
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  if (!isValidKeyName(name) || !/^[0-9a-f]{8}$/.test(idHex)) throw new NoteError('bad_key', 'malformed verifier key');
  let raw: Uint8Array;
  try {
    raw = fromBase64(vkey.slice(second + 1));
  } catch {
    throw new NoteError('bad_key', 'malformed verifier key');
  }
  if (raw.length !== 33 || raw[0] !== SIG_TYPE_ED25519) throw new NoteError('bad_key', 'unsupported verifier key type or length');
  const key = noteKey(name, raw.subarray(1));
  if (hex8(key.keyId) !== idHex) throw new NoteError('bad_key', 'verifier key ID does not match the key');
  return key;
}

function checkText(text: string): void {
  if (!text.endsWith('\n') || hasControl(text)) throw new NoteError('malformed', 'malformed note: text must end in a newline and hold no control characters');
}

export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  sign(message: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/** Signs `text` with each signer: the note text, a blank line, one signature line per signer. */
export async function signNote(text: string, signers: readonly NoteSigner[]): Promise<string> {
  checkText(text);
  if (signers.length === 0) throw new NoteError('malformed', 'a note needs at least one signer');
  const message = utf8(text);
  let out = `${text}\n`;
  for (const s of signers) {
    if (!isValidKeyName(s.name)) throw new NoteError('bad_key', `invalid key name ${JSON.stringify(s.name)}`);
    const sig = await s.sign(message);
    const id = new Uint8Array([s.keyId >>> 24, (s.keyId >>> 16) & 0xff, (s.keyId >>> 8) & 0xff, s.keyId & 0xff]);
    out += `${SIG_PREFIX}${s.name} ${toBase64(concatBytes(id, sig))}\n`;
  }
  return out;
}

/** Splits a signed note into its text and signature lines; throws NoteError('malformed'). */
export function parseNote(message: string): { text: string; signatures: NoteSignature[] } {
  if (hasControl(message)) throw new NoteError('malformed', 'malformed note: control characters');
  const split = message.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('malformed', 'malformed note: no blank line before the signatures');
  const text = message.slice(0, split + 1);
  const sigBlock = message.slice(split + 2);
  if (!sigBlock.endsWith('\n') || text.length === 0) throw new NoteError('malformed', 'malformed note: signatures must end in a newline');
  const lines = sigBlock.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw new NoteError('malformed', 'malformed note: too many signatures');
  const signatures = lines.map((line): NoteSignature => {
    if (!line.startsWith(SIG_PREFIX)) throw new NoteError('malformed', 'malformed note: bad signature line');
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    const name = rest.slice(0, space);
    const b64 = rest.slice(space + 1);
    if (space <= 0 || !isValidKeyName(name) || b64.includes(' ')) throw new NoteError('malformed', 'malformed note: bad signature line');
    let raw: Uint8Array;
    try {
      raw = fromBase64(b64);
    } catch {
      throw new NoteError('malformed', 'malformed note: signature is not base64');
    }
    if (raw.length < 5) throw new NoteError('malformed', 'malformed note: signature too short');
    const keyId = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
    return { name, keyId, base64: b64 };
  });
  return { text, signatures };
}

/**
 * Opens a signed note with the given keys, as c2sp.org/signed-note requires: signatures by
 * unknown keys are ignored; a signature by a known key that fails rejects the whole note; at
 * least one known key must have signed.
 */
export async function openNote(
  message: string | Uint8Array,
  keys: readonly NoteKey[],
  verify: Ed25519Verify = webCryptoEd25519Verify,
): Promise<OpenedNote> {
  let str: string;
  try {
    str = typeof message === 'string' ? message : fromUtf8(message);
  } catch {
    throw new NoteError('malformed', 'malformed note: not UTF-8');
  }
  const { text, signatures } = parseNote(str);
  const textBytes = utf8(text);
  const verified: NoteSignature[] = [];
  const unverified: NoteSignature[] = [];
  const seen = new Set<string>();
  for (const sig of signatures) {
    const matches = keys.filter((k) => k.name === sig.name && k.keyId === sig.keyId);
    if (matches.length === 0) {
      unverified.push(sig);
      continue;
    }
    if (matches.length > 1 && !matches.every((k) => bytesEqual(k.publicKey, matches[0]!.publicKey))) {
      throw new NoteError('ambiguous_key', `ambiguous key ${sig.name}+${hex8(sig.keyId)}`);
    }
    const raw = fromBase64(sig.base64);
    if (!(await verify(matches[0]!.publicKey, textBytes, raw.subarray(4)))) {
      throw new NoteError('invalid_signature', `invalid signature for key ${sig.name}+${hex8(sig.keyId)}`);
    }
    const id = `${sig.name}+${sig.keyId}`;
    if (!seen.has(id)) {
      seen.add(id);
      verified.push(sig);
    }
  }
  if (verified.length === 0) throw new NoteError('unverified', 'note has no verifiable signatures');
  return { text, verified, unverified };
}

/**
 * Transparency-log checkpoints (c2sp.org/tlog-checkpoint): origin, tree size and root hash, in a
 * signed note. Portable.
 */
import { fromBase64, toBase64 } from './bytes.ts';
import type { Ed25519Verify } from './ed25519.ts';
import { HASH_SIZE } from './merkle.ts';
import { NoteError, openNote, type NoteKey, type NoteSignature } from './note.ts';

export interface Checkpoint {
  origin: string;
  size: number;
  rootHash: Uint8Array;
  /** Optional extension lines (none are written by this ledger). */
  extensions: string[];
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export function formatCheckpoint(cp: Checkpoint): string {
  if (!cp.origin || /[\n]/.test(cp.origin)) throw new CheckpointError('invalid origin');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw new CheckpointError('invalid tree size');
  if (cp.rootHash.length !== HASH_SIZE) throw new CheckpointError('invalid root hash');
  for (const e of cp.extensions) if (!e || e.includes('\n')) throw new CheckpointError('invalid extension line');
  return [cp.origin, String(cp.size), toBase64(cp.rootHash), ...cp.extensions].map((l) => `${l}\n`).join('');
}

/** Parses a checkpoint's note text strictly (no leading zeros, 32-byte root, non-empty lines). */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new CheckpointError('checkpoint text must end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || lines.some((l) => l.length === 0)) throw new CheckpointError('checkpoint needs origin, size and root hash lines, none empty');
  const [origin, sizeLine, rootLine, ...extensions] = lines as [string, string, string, ...string[]];
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    throw new CheckpointError('checkpoint tree size is not a canonical decimal');
  }
  let rootHash: Uint8Array;
  try {
    rootHash = fromBase64(rootLine);
  } catch {
    throw new CheckpointError('checkpoint root hash is not base64');
  }
  if (rootHash.length !== HASH_SIZE) throw new CheckpointError(`checkpoint root hash is not ${HASH_SIZE} bytes`);
  return { origin, size: Number(sizeLine), rootHash, extensions };
}

export interface VerifiedCheckpoint extends Checkpoint {
  /** The signed note, as received. */
  note: string;
  signatures: NoteSignature[];
}

/**
 * Verifies a signed checkpoint: a signature by one of `keys` (whose names must be the origin),
 * and, when given, the expected origin. Throws NoteError (signature problems) or CheckpointError.
 */
export async function openCheckpoint(
  note: string,
  keys: readonly NoteKey[],
  opts: { origin?: string; verify?: Ed25519Verify } = {},
): Promise<VerifiedCheckpoint> {
  const opened = await openNote(note, keys, opts.verify);
  const cp = parseCheckpoint(opened.text);
  if (opts.origin !== undefined && cp.origin !== opts.origin) {
    throw new CheckpointError(`checkpoint origin ${JSON.stringify(cp.origin)} is not ${JSON.stringify(opts.origin)}`);
  }
  if (!opened.verified.some((s) => s.name === cp.origin)) {
    throw new NoteError('unverified', 'no verified signature by a key named as the checkpoint origin');
  }
  return { ...cp, note, signatures: opened.verified };
}

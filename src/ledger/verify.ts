/**
 * The verifier, shared by the HTTP API, the CLI and (later) the compliance page in a browser.
 * Portable: no Node API. Node callers pass node:crypto's SHA-256 and Ed25519 for speed
 * (node-crypto.ts); the defaults are the portable SHA-256 and WebCrypto.
 *
 * - verifyRecord: a verification record's JWS (with the JWKS), its claims against its own ledger
 *   entry, the entry's inclusion proof, and the signed checkpoint the proof leads to.
 * - LedgerAuditor: the whole-ledger audit, fed entry by entry (audit-fs.ts reads a directory).
 */
import canonicalize from 'canonicalize';
import { createLocalJWKSet, errors as joseErrors, jwtVerify } from 'jose';
import { fromBase64, fromUtf8, toBase64, utf8 } from './bytes.ts';
import { CheckpointError, openCheckpoint, parseCheckpoint, type VerifiedCheckpoint } from './checkpoint.ts';
import type { Ed25519Verify } from './ed25519.ts';
import { decodeEntry, EntryFormatError, type LedgerEntry } from './entry.ts';
import { keysFromJwks, noteKeysFor, publicJwk, type Jwks, type LedgerPublicKey } from './keys.ts';
import { checkInclusion, CompactRange, hashLeaf, ProofError, type HashFn } from './merkle.ts';
import { NoteError, parseNote } from './note.ts';
import { RECORD_ENTRY_TYPE, RECORD_TYP, recordBundleSchema, recordClaimsSchema, type RecordClaims } from './record-claims.ts';
import { sha256 } from './sha256.ts';

export interface CryptoOptions {
  /** SHA-256 (default: the portable one). */
  sha256?: HashFn;
  /** Ed25519 verification (default: WebCrypto). */
  ed25519Verify?: Ed25519Verify;
}

// ---- verification records ---------------------------------------------------------------------

export type RecordProblemKind =
  | 'malformed'
  | 'signature'
  | 'unknown_key'
  | 'expired'
  | 'not_yet_valid'
  | 'claims'
  | 'origin'
  | 'entry_mismatch'
  | 'inclusion'
  | 'checkpoint_signature'
  | 'checkpoint_malformed';

export type RecordVerification =
  | { ok: true; claims: RecordClaims; kid: string; entry: LedgerEntry; checkpoint: { origin: string; size: number; rootHash: string } }
  | { ok: false; problem: { kind: RecordProblemKind; message: string } };

export interface RecordVerifyOptions extends CryptoOptions {
  /** The bank's public keys: a JWKS or the keys it holds. */
  keys: Jwks | readonly LedgerPublicKey[];
  /** The ledger origin the record must come from (default: accept the record's own). */
  origin?: string;
  /** Time to check expiry against (default: now). */
  now?: Date;
}

function fail(kind: RecordProblemKind, message: string): RecordVerification {
  return { ok: false, problem: { kind, message } };
}

/**
 * Checks a verification record end to end; never throws for a bad record, it says what is wrong.
 * Order: shape, JWS signature (kid in the JWKS), time, claims, the entry matches the claims,
 * inclusion of the entry, the checkpoint's signature.
 */
export async function verifyRecord(bundle: unknown, opts: RecordVerifyOptions): Promise<RecordVerification> {
  const hash = opts.sha256 ?? sha256;
  const parsed = recordBundleSchema.safeParse(bundle);
  if (!parsed.success) return fail('malformed', `not a verification record: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const b = parsed.data;
  const keys = Array.isArray(opts.keys) ? (opts.keys as LedgerPublicKey[]) : keysFromJwks(opts.keys);
  const jwks = { keys: keys.map((k) => publicJwk(k.publicKey)) };
  const now = opts.now ?? new Date();

  // 1. The JWS, with nothing but the JWKS: any JOSE library does the same.
  let payload: Record<string, unknown>;
  let kid: string;
  try {
    const res = await jwtVerify(b.jws, createLocalJWKSet(jwks), { algorithms: ['EdDSA'], typ: RECORD_TYP, currentDate: now });
    payload = res.payload as Record<string, unknown>;
    kid = String(res.protectedHeader.kid);
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) return fail('expired', `the record expired at ${new Date(Number((err.payload as { exp?: number }).exp) * 1000).toISOString()}`);
    if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'nbf') return fail('not_yet_valid', err.message);
    if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'iat') return fail('not_yet_valid', 'the record was issued in the future');
    if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys) return fail('unknown_key', 'the record is signed by a key not in the JWKS');
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) return fail('signature', 'the record signature does not verify');
    return fail('signature', `the record JWS is invalid: ${(err as Error).message}`);
  }
  if (typeof payload.iat === 'number' && payload.iat > Math.floor(now.getTime() / 1000) + 60) return fail('not_yet_valid', 'the record was issued in the future');

  // 2. Its claims.
  const claimsParsed = recordClaimsSchema.safeParse(payload);
  if (!claimsParsed.success) return fail('claims', `record claims are invalid: ${claimsParsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const claims = claimsParsed.data;
  if (claims.sub !== claims.sessionId) return fail('claims', 'sub is not the session id');
  if (opts.origin !== undefined && claims.iss !== opts.origin) return fail('origin', `the record is from ${claims.iss}, not ${opts.origin}`);
  if (claims.ledgerIndex !== b.index) return fail('entry_mismatch', `the record names ledger index ${claims.ledgerIndex}, the proof is for ${b.index}`);

  // 3. Its own ledger entry says the same.
  const entryBytes = utf8(b.entry);
  let entry: LedgerEntry;
  try {
    entry = decodeEntry(entryBytes);
  } catch (err) {
    return fail('entry_mismatch', `the record's ledger entry is invalid: ${(err as Error).message}`);
  }
  const { ledgerIndex: _index, ...base } = claims;
  const committed = (entry.payload as { record?: unknown; kid?: unknown }).record;
  if (entry.index !== b.index || entry.type !== RECORD_ENTRY_TYPE || entry.sessionId !== claims.sessionId || entry.actor !== claims.tellerId) {
    return fail('entry_mismatch', 'the ledger entry is not this record\'s entry (index, type, session or teller differ)');
  }
  if (canonicalize(committed) !== canonicalize(base)) return fail('entry_mismatch', 'the record\'s claims differ from those committed in its ledger entry');
  if ((entry.payload as { kid?: unknown }).kid !== kid) return fail('entry_mismatch', 'the record is signed by another key than its ledger entry names');

  // 4. The checkpoint: signed by a key of the JWKS, named as its origin.
  let cpText: string;
  try {
    cpText = parseNote(b.checkpoint).text;
    parseCheckpoint(cpText);
  } catch (err) {
    return fail('checkpoint_malformed', `the checkpoint is malformed: ${(err as Error).message}`);
  }
  const origin = parseCheckpoint(cpText).origin;
  if (origin !== claims.iss) return fail('origin', `the checkpoint is from ${origin}, the record from ${claims.iss}`);
  let cp: VerifiedCheckpoint;
  try {
    cp = await openCheckpoint(b.checkpoint, noteKeysFor(origin, keys), { origin: opts.origin ?? claims.iss, ...(opts.ed25519Verify ? { verify: opts.ed25519Verify } : {}) });
  } catch (err) {
    if (err instanceof NoteError || err instanceof CheckpointError) return fail('checkpoint_signature', `the checkpoint does not verify: ${err.message}`);
    throw err;
  }

  // 5. The entry is in the checkpoint's tree.
  let proof: Uint8Array[];
  try {
    proof = b.inclusionProof.map(fromBase64);
  } catch {
    return fail('malformed', 'the inclusion proof is not base64');
  }
  try {
    checkInclusion(b.index, cp.size, hashLeaf(entryBytes, hash), proof, cp.rootHash, hash);
  } catch (err) {
    if (err instanceof ProofError) return fail('inclusion', `the inclusion proof does not match the checkpoint: ${err.reason}`);
    throw err;
  }
  return { ok: true, claims, kid, entry, checkpoint: { origin: cp.origin, size: cp.size, rootHash: toBase64(cp.rootHash) } };
}

// ---- whole-ledger audit -----------------------------------------------------------------------

export type AuditProblemKind =
  | 'ledger_meta'
  | 'segment_header'
  | 'frame_truncated'
  | 'frame_length'
  | 'frame_crc'
  | 'entry_malformed'
  | 'entry_missing'
  | 'entries_swapped'
  | 'entry_duplicated'
  | 'checkpoint_log'
  | 'checkpoint_malformed'
  | 'checkpoint_signature'
  | 'checkpoint_origin'
  | 'checkpoint_root_mismatch'
  | 'checkpoint_regressed'
  | 'checkpoint_beyond_log'
  | 'no_checkpoint'
  | 'unsigned_entries'
  | 'rollback'
  | 'fork'
  | 'trusted_checkpoint_invalid';

export interface AuditProblem {
  kind: AuditProblemKind;
  /** The entry index (or, for checkpoints, the tree size) where it is. */
  index?: number;
  message: string;
  file?: string;
  offset?: number;
}

export interface AuditReport {
  ok: boolean;
  origin: string | undefined;
  entries: number;
  /** Bytes of entry data read. */
  bytes: number;
  segments: number;
  /** Root of the recomputed tree over every entry read (base64). */
  rootHash: string;
  checkpoints: {
    count: number;
    verified: number;
    latest?: { size: number; rootHash: string; note: string };
    byKey: Record<string, number>;
  };
  trustedCheckpoints: number;
  /** Entries after the newest checkpoint (not covered by any signature). */
  unsignedEntries: number;
  /** The first problem by position, then the rest (at most MAX_PROBLEMS). */
  firstProblem?: AuditProblem;
  problems: AuditProblem[];
  problemCount: number;
}

export const MAX_PROBLEMS = 100;

export interface AuditorOptions extends CryptoOptions {
  /** The public keys the auditor trusts (never taken from the directory under audit). */
  keys: readonly LedgerPublicKey[];
  /** The expected origin; default: the ledger's own (its LEDGER file). */
  origin?: string;
  /** Entries after the newest checkpoint are a problem unless this is set (a live ledger). */
  allowUnsignedTail?: boolean;
}

interface PendingShift {
  position: number;
  found: number;
  previousShift: number;
  file?: string;
  offset?: number;
}

interface CheckpointAt {
  size: number;
  rootHash: Uint8Array;
  trusted: boolean;
  label: string;
}

/**
 * Audits a ledger fed in file order: call setOrigin, checkpoint (each stored checkpoint, in log
 * order) and trustedCheckpoint, then segment / entry / frameProblem for the segments, then
 * finish(). Everything the directory says is checked against the keys the auditor brings.
 */
export class LedgerAuditor {
  private readonly hash: HashFn;
  private readonly range: CompactRange;
  private origin: string | undefined;
  private readonly problems: AuditProblem[] = [];
  private problemCount = 0;
  private readonly expected = new Map<number, CheckpointAt[]>();
  private maxCheckpointSize = -1;
  private storedCount = 0;
  private verifiedCount = 0;
  private trustedCount = 0;
  private readonly byKey: Record<string, number> = {};
  private latest: { size: number; rootHash: string; note: string } | undefined;
  private previousStoredSize = -1;
  private count = 0;
  private bytes = 0;
  private segmentCount = 0;
  private pendingShift: PendingShift | undefined;
  private shift = 0;

  constructor(private readonly opts: AuditorOptions) {
    this.hash = opts.sha256 ?? sha256;
    this.range = new CompactRange(this.hash);
    this.origin = opts.origin;
  }

  problem(p: AuditProblem): void {
    this.problemCount++;
    if (this.problems.length < MAX_PROBLEMS) this.problems.push(p);
  }

  /** The origin the ledger declares (its LEDGER file); checked against the expected one. */
  setOrigin(declared: string | undefined): void {
    if (declared === undefined) {
      this.problem({ kind: 'ledger_meta', message: 'the ledger has no readable LEDGER file naming its origin' });
      return;
    }
    if (this.opts.origin !== undefined && declared !== this.opts.origin) {
      this.problem({ kind: 'checkpoint_origin', message: `the ledger says its origin is ${declared}, expected ${this.opts.origin}` });
      return;
    }
    this.origin ??= declared;
  }

  private async open(note: string): Promise<VerifiedCheckpoint> {
    const origin = this.origin ?? parseCheckpoint(parseNote(note).text).origin;
    return openCheckpoint(note, noteKeysFor(origin, this.opts.keys), { origin, ...(this.opts.ed25519Verify ? { verify: this.opts.ed25519Verify } : {}) });
  }

  /** A checkpoint from the ledger's checkpoint log, in log order. */
  async checkpoint(note: string | Uint8Array, where: { file?: string; offset?: number } = {}): Promise<void> {
    this.storedCount++;
    const n = this.storedCount;
    let text: string;
    try {
      text = typeof note === 'string' ? note : fromUtf8(note);
      const cp = parseCheckpoint(parseNote(text).text);
      if (this.origin !== undefined && cp.origin !== this.origin) {
        this.problem({ kind: 'checkpoint_origin', index: cp.size, message: `checkpoint #${n} has origin ${cp.origin}, expected ${this.origin}`, ...where });
        return;
      }
    } catch (err) {
      this.problem({ kind: 'checkpoint_malformed', message: `checkpoint #${n} is malformed: ${(err as Error).message}`, ...where });
      return;
    }
    let cp: VerifiedCheckpoint;
    try {
      cp = await this.open(text);
    } catch (err) {
      if (!(err instanceof NoteError) && !(err instanceof CheckpointError)) throw err;
      const size = parseCheckpoint(parseNote(text).text).size;
      this.problem({ kind: 'checkpoint_signature', index: size, message: `checkpoint #${n} (size ${size}) is not signed by a trusted key: ${err.message}`, ...where });
      return;
    }
    this.verifiedCount++;
    for (const sig of cp.signatures) {
      const kid = this.opts.keys.find((k) => noteKeysFor(cp.origin, [k])[0]!.keyId === sig.keyId)?.kid ?? 'unknown';
      this.byKey[kid] = (this.byKey[kid] ?? 0) + 1;
    }
    if (cp.size < this.previousStoredSize) {
      this.problem({ kind: 'checkpoint_regressed', index: cp.size, message: `checkpoint #${n} has size ${cp.size}, smaller than the one before it (${this.previousStoredSize})`, ...where });
    }
    this.previousStoredSize = Math.max(this.previousStoredSize, cp.size);
    if (!this.latest || cp.size >= this.latest.size) this.latest = { size: cp.size, rootHash: toBase64(cp.rootHash), note: text };
    this.expect({ size: cp.size, rootHash: cp.rootHash, trusted: false, label: `checkpoint #${n}` });
  }

  /**
   * A checkpoint the auditor obtained earlier (from a record, a witness or a previous audit):
   * the ledger must still contain it. This is what detects a ledger rolled back to an older,
   * self-consistent state.
   */
  async trustedCheckpoint(note: string, label = 'trusted checkpoint'): Promise<void> {
    let cp: VerifiedCheckpoint;
    try {
      cp = await this.open(note);
    } catch (err) {
      this.problem({ kind: 'trusted_checkpoint_invalid', message: `${label} does not verify with the keys given: ${(err as Error).message}` });
      return;
    }
    this.trustedCount++;
    this.expect({ size: cp.size, rootHash: cp.rootHash, trusted: true, label });
  }

  private expect(c: CheckpointAt): void {
    const list = this.expected.get(c.size);
    if (list) list.push(c);
    else this.expected.set(c.size, [c]);
    this.maxCheckpointSize = Math.max(this.maxCheckpointSize, c.size);
    if (c.size === 0) this.compareRoot(0);
  }

  /**
   * A segment file starts. Its name and header must agree on its first index; whether that is
   * the next index is left to the entries' own numbers (a missing segment shows as missing entries).
   */
  segment(file: string, declaredFirst: number, header: { firstIndex: number } | { problem: string }): void {
    this.segmentCount++;
    if ('problem' in header) {
      this.problem({ kind: 'segment_header', index: this.count, message: `segment ${file} has a bad header (${header.problem})`, file, offset: 0 });
    } else if (header.firstIndex !== declaredFirst) {
      this.problem({ kind: 'segment_header', index: this.count, message: `segment ${file} is named for index ${declaredFirst} but its header says ${header.firstIndex}`, file, offset: 0 });
    }
  }

  frameProblem(kind: 'truncated' | 'length' | 'crc', where: { file: string; offset: number; trailingBytes: number }): void {
    const kinds = { truncated: 'frame_truncated', length: 'frame_length', crc: 'frame_crc' } as const;
    const what = { truncated: 'the file ends inside a frame', length: 'a frame has an impossible length', crc: 'a frame fails its CRC (its bytes were changed)' }[kind];
    this.problem({
      kind: kinds[kind],
      index: this.count,
      message: `entry ${this.count}: ${what}; ${where.trailingBytes} bytes from there to the end of ${where.file} are unreadable`,
      file: where.file,
      offset: where.offset,
    });
  }

  /** The next entry in file order. */
  entry(bytes: Uint8Array, where: { file?: string; offset?: number } = {}): void {
    const position = this.count;
    let entry: LedgerEntry | undefined;
    try {
      entry = decodeEntry(bytes);
    } catch (err) {
      if (!(err instanceof EntryFormatError)) throw err;
      this.problem({ kind: 'entry_malformed', index: position, message: `entry ${position}: ${err.message}`, ...where });
    }
    if (entry) this.checkIndex(position, entry.index, where);
    this.range.append(hashLeaf(bytes, this.hash));
    this.count++;
    this.bytes += bytes.length;
    if (this.expected.has(this.count)) this.compareRoot(this.count);
  }

  private checkIndex(position: number, found: number, where: { file?: string; offset?: number }): void {
    const pending = this.pendingShift;
    if (pending) {
      this.pendingShift = undefined;
      if (pending.found === pending.position + 1 && found === pending.position) {
        this.problem({ kind: 'entries_swapped', index: pending.position, message: `entries ${pending.position} and ${found + 1} are in each other's place`, file: pending.file, offset: pending.offset });
        this.shift = 0;
        return;
      }
      this.classify(pending);
    }
    const shift = found - position;
    if (shift === this.shift) return;
    this.pendingShift = { position, found, previousShift: this.shift, ...where };
    this.shift = shift;
  }

  /** Entries numbered out of sequence: `found` where `position` was due. */
  private classify(p: PendingShift): void {
    const jump = p.found - p.position - p.previousShift;
    if (jump > 0) {
      const missing = jump;
      this.problem({
        kind: 'entry_missing',
        index: p.position,
        message: `entry ${p.position}: found entry ${p.found} in its place; ${missing > 1 ? `${missing} entries are` : 'an entry is'} missing`,
        file: p.file,
        offset: p.offset,
      });
    } else {
      this.problem({ kind: 'entry_duplicated', index: p.position, message: `entry ${p.position}: found entry ${p.found} again (an entry was inserted or repeated)`, file: p.file, offset: p.offset });
    }
  }

  private compareRoot(size: number): void {
    const root = this.range.root();
    for (const c of this.expected.get(size) ?? []) {
      if (toBase64(root) === toBase64(c.rootHash)) continue;
      if (c.trusted) {
        this.problem({ kind: 'fork', index: size, message: `${c.label} (size ${size}) does not match the ledger: the entries before ${size} were rewritten` });
      } else {
        this.problem({
          kind: 'checkpoint_root_mismatch',
          index: size,
          message: `${c.label} (size ${size}) does not match the recomputed tree: an entry before ${size} was changed, removed or added`,
        });
      }
    }
  }

  /** Completes the audit. */
  finish(): AuditReport {
    if (this.pendingShift) {
      this.classify(this.pendingShift);
      this.pendingShift = undefined;
    }
    for (const [size, list] of this.expected) {
      if (size <= this.count) continue;
      for (const c of list) {
        this.problem(
          c.trusted
            ? { kind: 'rollback', index: this.count, message: `${c.label} covers ${size} entries, the ledger has ${this.count}: it was rolled back or truncated` }
            : { kind: 'checkpoint_beyond_log', index: this.count, message: `${c.label} covers ${size} entries, the ledger has only ${this.count}: entries ${this.count}..${size - 1} are missing` },
        );
      }
    }
    const signedUpTo = this.latest?.size ?? 0;
    const unsigned = Math.max(0, this.count - signedUpTo);
    if (!this.latest && this.count > 0) {
      this.problem({ kind: 'no_checkpoint', index: 0, message: `${this.count} entries and no valid checkpoint signs any of them` });
    } else if (unsigned > 0 && !this.opts.allowUnsignedTail) {
      this.problem({ kind: 'unsigned_entries', index: signedUpTo, message: `entries ${signedUpTo}..${this.count - 1} are after the newest checkpoint: no signature covers them` });
    }
    const sorted = [...this.problems].sort((a, b) => (a.index ?? -1) - (b.index ?? -1));
    return {
      ok: this.problemCount === 0,
      origin: this.origin,
      entries: this.count,
      bytes: this.bytes,
      segments: this.segmentCount,
      rootHash: toBase64(this.range.root()),
      checkpoints: { count: this.storedCount, verified: this.verifiedCount, ...(this.latest ? { latest: this.latest } : {}), byKey: this.byKey },
      trustedCheckpoints: this.trustedCount,
      unsignedEntries: unsigned,
      ...(sorted[0] ? { firstProblem: sorted[0] } : {}),
      problems: sorted,
      problemCount: this.problemCount,
    };
  }

  /** Whether the audit found any problem so far. */
  get failed(): boolean {
    return this.problemCount > 0;
  }

  /** Entries read so far. */
  get entriesRead(): number {
    return this.count;
  }
}

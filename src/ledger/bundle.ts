/**
 * A session's evidence, and its offline form, the evidence bundle. Portable (no Node API): the
 * server builds it (src/http/compliance.ts), `videoteller verify-bundle` and the compliance page
 * check it with the same functions.
 *
 * Session evidence (what GET /api/compliance/sessions/:id serves, as JSON):
 *   - every entry of the session as stored (its canonical bytes, base64), each with its RFC 9162
 *     inclusion proof to ONE signed checkpoint;
 *   - that checkpoint (C2SP signed note) and the public keys (JWKS);
 *   - the verification record as issued (JWS, its entry, its own proof and checkpoint), if any,
 *     with a consistency proof from the record's checkpoint to this one;
 *   - the blobs the entries name (recording, reference photo, document photos) by SHA-256.
 *
 * The bundle (GET …/bundle) is a POSIX tar (tar.ts) of plain files, readable by `tar -xf`:
 *   manifest.json            this format's index (bundleManifestSchema)
 *   checkpoint.txt           the signed checkpoint
 *   jwks.json                the ledger's public keys as the server published them
 *   record.json              the verification record (absent if the session has none)
 *   entries/<index>.json     each entry's canonical bytes, exactly as hashed into the tree
 *   blobs/<sha256>.<ext>     the recording and the photos, byte for byte
 *
 * What a check proves, and what it cannot:
 *   - each entry present is in the log whose signed checkpoint is given (its bytes lead, through
 *     the proof, to the signed root): a changed byte in any entry fails that entry;
 *   - the checkpoint is signed by a key of the bundle's JWKS. Keys shipped INSIDE the bundle only
 *     show the bundle is self-consistent: whoever forged it could have made the keys too. Proof of
 *     origin needs keys the auditor obtained independently (`--trusted-key`, the bank's published
 *     JWKS), and the report says which of the two was used;
 *   - the record's JWS holds, its entry is the bundle's entry at its index, and the log at the
 *     record's time is a prefix of the log at the bundle's checkpoint (consistency proof);
 *   - every blob hashes to the SHA-256 the entries (and the record) name;
 *   - it does NOT prove that no entry of the session was left out: that needs the whole log
 *     (`videoteller verify DIR`).
 */
import { z } from 'zod';
import { bytesEqual, fromBase64, fromBase64Url, fromUtf8, toBase64, toBase64Url, toHex } from './bytes.ts';
import { CheckpointError, openCheckpoint, parseCheckpoint, type VerifiedCheckpoint } from './checkpoint.ts';
import type { Ed25519Verify } from './ed25519.ts';
import { decodeEntry, type LedgerEntry } from './entry.ts';
import { keysFromJwks, noteKeysFor, type Jwks, type LedgerPublicKey } from './keys.ts';
import { checkConsistency, checkInclusion, hashLeaf, ProofError, type HashFn } from './merkle.ts';
import { NoteError, parseNote } from './note.ts';
import { sha256 as portableSha256 } from './sha256.ts';
import { readTar, TarError } from './tar.ts';
import { recordBundleSchema } from './record-claims.ts';
import { verifyRecord } from './verify.ts';

export const EVIDENCE_FORMAT = 'videoteller-session-evidence';
export const BUNDLE_FORMAT = 'videoteller-evidence-bundle';

export const BLOB_KINDS = ['recording', 'reference_photo', 'document_photo'] as const;
export type BlobKind = (typeof BLOB_KINDS)[number];

/** The entries that name a blob, and the payload field holding its SHA-256 (lower-case hex). */
export const BLOB_FIELDS: Readonly<Record<string, { kind: BlobKind; field: string }>> = Object.freeze({
  'recording.stored': { kind: 'recording', field: 'sha256' },
  'identity.reference_photo': { kind: 'reference_photo', field: 'photoSha256' },
  'identity.document_capture': { kind: 'document_photo', field: 'imageSha256' },
});

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** The blob an entry names, if it names one. */
export function blobNamedBy(entry: Pick<LedgerEntry, 'type' | 'payload'>): { kind: BlobKind; sha256: string } | undefined {
  const f = BLOB_FIELDS[entry.type];
  if (!f) return undefined;
  const v = (entry.payload as Record<string, unknown>)[f.field];
  return typeof v === 'string' && SHA256_HEX.test(v) ? { kind: f.kind, sha256: v } : undefined;
}

/** The SHA-256s a record's claims name (recording, document image), by what they are. */
export function blobsNamedByClaims(claims: { evidence?: unknown }): { kind: BlobKind; sha256: string }[] {
  const ev = (claims.evidence ?? {}) as Record<string, unknown>;
  const out: { kind: BlobKind; sha256: string }[] = [];
  const recording = ev.recording as { sha256?: unknown } | undefined;
  if (typeof recording?.sha256 === 'string') out.push({ kind: 'recording', sha256: recording.sha256 });
  if (typeof ev.recordingSha256 === 'string') out.push({ kind: 'recording', sha256: ev.recordingSha256 });
  const doc = ev.document as { imageSha256?: unknown } | undefined;
  if (typeof doc?.imageSha256 === 'string') out.push({ kind: 'document_photo', sha256: doc.imageSha256 });
  return out;
}

const index = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const b64hash = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'expected a base64 SHA-256');
const sha256Hex = z.string().regex(SHA256_HEX, 'expected a lower-case hex SHA-256');
const proof = z.array(b64hash).max(64);
const sessionId = z.string().min(1).max(128);
const jwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())).max(100) }).passthrough();

export const blobRefSchema = z
  .object({
    kind: z.enum(BLOB_KINDS),
    sha256: sha256Hex,
    /** Size as the naming entry states it (recordings) or as stored; null if unknown. */
    bytes: index.nullable(),
    mimeType: z.string().min(1).max(64),
    /** The entry that names it. */
    entryIndex: index,
    /** Why the server could not supply it (`not_found`, `corrupt`); absent when it could. */
    missing: z.enum(['not_found', 'corrupt']).optional(),
  })
  .strict();
export type BlobRef = z.infer<typeof blobRefSchema>;

export const evidenceEntrySchema = z
  .object({
    index,
    /** The canonical entry bytes as stored, base64; null when the server could not read them back. */
    bytes: z.string().max(32 * 1024).nullable(),
    proof,
    /** Why the bytes are missing (the server's read failed: CRC, truncation…). */
    unreadable: z.string().max(500).optional(),
  })
  .strict();

export const sessionEvidenceSchema = z
  .object({
    format: z.literal(EVIDENCE_FORMAT),
    version: z.literal(1),
    sessionId,
    origin: z.string().min(1).max(256),
    /** The signed checkpoint every proof leads to. */
    checkpoint: z.string().min(1).max(16 * 1024),
    keys: jwksSchema,
    entries: z.array(evidenceEntrySchema).max(1_000_000),
    /** The verification record as issued (checked by verifyRecord), or null. */
    record: z.unknown().nullable(),
    /** Consistency proof from the record's checkpoint to `checkpoint` (null without a record). */
    recordConsistency: proof.nullable(),
    blobs: z.array(blobRefSchema).max(1000),
  })
  .strict();
export type SessionEvidence = z.infer<typeof sessionEvidenceSchema>;

export const bundleManifestSchema = z
  .object({
    format: z.literal(BUNDLE_FORMAT),
    version: z.literal(1),
    sessionId,
    origin: z.string().min(1).max(256),
    createdAt: z.string().max(64),
    createdBy: z.string().max(128),
    checkpoint: z.literal('checkpoint.txt'),
    keys: z.literal('jwks.json'),
    record: z.literal('record.json').nullable(),
    recordConsistency: proof.nullable(),
    entries: z
      .array(z.object({ index, file: z.string().max(100).nullable(), proof, unreadable: z.string().max(500).optional() }).strict())
      .max(1_000_000),
    blobs: z.array(blobRefSchema.extend({ file: z.string().max(100).nullable() }).strict()).max(1000),
  })
  .strict();
export type BundleManifest = z.infer<typeof bundleManifestSchema>;

export function entryFileName(i: number): string {
  return `entries/${String(i).padStart(16, '0')}.json`;
}

const EXTENSIONS: Record<string, string> = { 'video/webm': 'webm', 'video/x-matroska': 'mkv', 'image/jpeg': 'jpg', 'image/png': 'png' };
export function blobFileName(ref: Pick<BlobRef, 'sha256' | 'mimeType'>): string {
  return `blobs/${ref.sha256}.${EXTENSIONS[ref.mimeType] ?? 'bin'}`;
}

// ---- checking ---------------------------------------------------------------------------------

export type EvidenceProblemKind =
  | 'malformed'
  | 'checkpoint_malformed'
  | 'checkpoint_signature'
  | 'checkpoint_untrusted'
  | 'checkpoint_origin'
  | 'entry_unreadable'
  | 'entry_malformed'
  | 'entry_mismatch'
  | 'entry_duplicated'
  | 'entry_beyond_checkpoint'
  | 'inclusion'
  | 'record'
  | 'record_not_in_log'
  | 'record_inconsistent'
  | 'blob_missing'
  | 'blob_mismatch'
  | 'blob_size'
  | 'blob_unnamed';

export interface EvidenceProblem {
  kind: EvidenceProblemKind;
  /** The entry index it concerns, if any. */
  index?: number;
  sha256?: string;
  message: string;
}

export interface EntryCheck {
  index: number;
  ok: boolean;
  /** From the entry's own bytes, when they decode. */
  type?: string;
  time?: string;
  actor?: string;
  entry?: LedgerEntry;
  problem?: EvidenceProblem;
}

export interface BlobCheck {
  kind: BlobKind;
  sha256: string;
  entryIndex: number;
  ok: boolean;
  bytes?: number;
  problem?: EvidenceProblem;
}

export interface EvidenceReport {
  ok: boolean;
  sessionId: string;
  origin: string;
  checkpoint: {
    ok: boolean;
    size?: number;
    rootHash?: string;
    /** Key ids (RFC 7638) whose signature on the checkpoint verified. */
    signedBy: string[];
    /**
     * `trusted`: verified with keys the auditor brought. `bundled`: only with the keys that came
     * with the evidence, which shows consistency, not origin.
     */
    keys: 'trusted' | 'bundled';
    problem?: EvidenceProblem;
  };
  entries: EntryCheck[];
  record:
    | null
    | {
        ok: boolean;
        index?: number;
        jti?: string;
        kid?: string;
        decision?: string;
        tellerId?: string;
        /** Size of the checkpoint the record was issued with. */
        checkpointSize?: number;
        claims?: Record<string, unknown>;
        problem?: EvidenceProblem;
      };
  /** Filled by checkBlobs (bundle, page); empty until then. */
  blobs: BlobCheck[];
  problems: EvidenceProblem[];
}

export interface EvidenceCheckOptions {
  /** Keys the auditor obtained independently of the evidence (the bank's published JWKS). */
  trustedKeys?: readonly LedgerPublicKey[];
  /** The expected log origin (default: the evidence's own). */
  origin?: string;
  sha256?: HashFn;
  ed25519Verify?: Ed25519Verify;
}

async function openWith(note: string, origin: string, keys: readonly LedgerPublicKey[], verify?: Ed25519Verify): Promise<VerifiedCheckpoint> {
  return openCheckpoint(note, noteKeysFor(origin, keys), { origin, ...(verify ? { verify } : {}) });
}

function kidsOf(cp: VerifiedCheckpoint, keys: readonly LedgerPublicKey[]): string[] {
  const out: string[] = [];
  for (const sig of cp.signatures) {
    const k = keys.find((key) => noteKeysFor(cp.origin, [key])[0]!.keyId === sig.keyId);
    if (k && !out.includes(k.kid)) out.push(k.kid);
  }
  return out;
}

/**
 * Checks a session's evidence (entries, proofs, checkpoint, record). Never throws for bad
 * evidence: everything wrong is a problem in the report, per entry where it belongs. Blobs are
 * checked separately (checkBlobs), since their bytes come from elsewhere.
 */
export async function verifySessionEvidence(input: unknown, opts: EvidenceCheckOptions = {}): Promise<EvidenceReport> {
  const hash = opts.sha256 ?? portableSha256;
  const problems: EvidenceProblem[] = [];
  const parsed = sessionEvidenceSchema.safeParse(input);
  if (!parsed.success) {
    const p: EvidenceProblem = { kind: 'malformed', message: `not session evidence: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
    return { ok: false, sessionId: '', origin: '', checkpoint: { ok: false, signedBy: [], keys: 'bundled', problem: p }, entries: [], record: null, blobs: [], problems: [p] };
  }
  const ev = parsed.data;
  const origin = opts.origin ?? ev.origin;
  const report: EvidenceReport = {
    ok: false,
    sessionId: ev.sessionId,
    origin,
    checkpoint: { ok: false, signedBy: [], keys: opts.trustedKeys ? 'trusted' : 'bundled' },
    entries: [],
    record: null,
    blobs: [],
    problems,
  };

  // 1. The checkpoint: with the bundled keys, and with the auditor's own if given.
  let bundledKeys: LedgerPublicKey[] = [];
  try {
    bundledKeys = keysFromJwks(ev.keys);
  } catch (err) {
    problems.push({ kind: 'malformed', message: `the bundled JWKS is unusable: ${(err as Error).message}` });
  }
  const keys = opts.trustedKeys ?? bundledKeys;
  let cp: VerifiedCheckpoint | undefined;
  try {
    const declared = parseCheckpoint(parseNote(ev.checkpoint).text);
    if (declared.origin !== origin) throw new CheckpointError(`the checkpoint is for ${declared.origin}, expected ${origin}`);
  } catch (err) {
    const p: EvidenceProblem = {
      kind: err instanceof CheckpointError && /expected/.test(err.message) ? 'checkpoint_origin' : 'checkpoint_malformed',
      message: `the checkpoint: ${(err as Error).message}`,
    };
    report.checkpoint.problem = p;
    problems.push(p);
  }
  if (!report.checkpoint.problem) {
    try {
      cp = await openWith(ev.checkpoint, origin, keys, opts.ed25519Verify);
    } catch (err) {
      if (!(err instanceof NoteError) && !(err instanceof CheckpointError)) throw err;
      const p: EvidenceProblem = opts.trustedKeys
        ? { kind: 'checkpoint_untrusted', message: `the checkpoint is not signed by any of the trusted keys: ${err.message}` }
        : { kind: 'checkpoint_signature', message: `the checkpoint's signature does not verify with the bundled keys: ${err.message}` };
      report.checkpoint.problem = p;
      problems.push(p);
    }
  }
  if (cp) report.checkpoint = { ok: true, size: cp.size, rootHash: toBase64(cp.rootHash), signedBy: kidsOf(cp, keys), keys: report.checkpoint.keys };

  // 2. Every entry: its own bytes, decoded strictly, led by its proof to the signed root.
  const seen = new Set<number>();
  const byIndex = new Map<number, { bytes: Uint8Array; check: EntryCheck }>();
  for (const e of ev.entries) {
    const check: EntryCheck = { index: e.index, ok: false };
    report.entries.push(check);
    const fail = (kind: EvidenceProblemKind, message: string) => {
      check.problem = { kind, index: e.index, message };
      problems.push(check.problem);
    };
    if (seen.has(e.index)) {
      fail('entry_duplicated', `entry ${e.index} appears twice`);
      continue;
    }
    seen.add(e.index);
    if (e.bytes === null) {
      fail('entry_unreadable', `the server could not read entry ${e.index} back: ${e.unreadable ?? 'unknown reason'}`);
      continue;
    }
    let bytes: Uint8Array;
    try {
      bytes = fromBase64(e.bytes);
    } catch {
      fail('malformed', `entry ${e.index} is not base64`);
      continue;
    }
    byIndex.set(e.index, { bytes, check });
    let entry: LedgerEntry | undefined;
    let formProblem: string | undefined;
    try {
      entry = decodeEntry(bytes);
      check.type = entry.type;
      check.time = entry.time;
      check.actor = entry.actor;
      check.entry = entry;
    } catch (err) {
      formProblem = (err as Error).message;
    }
    if (!cp) {
      fail('checkpoint_signature', 'no verified checkpoint to check the entry against');
      continue;
    }
    if (e.index >= cp.size) {
      fail('entry_beyond_checkpoint', `entry ${e.index} is not covered by the checkpoint of size ${cp.size}`);
      continue;
    }
    try {
      checkInclusion(e.index, cp.size, hashLeaf(bytes, hash), e.proof.map(fromBase64), cp.rootHash, hash);
    } catch (err) {
      if (!(err instanceof ProofError)) throw err;
      fail('inclusion', `entry ${e.index} is not in the signed log: its bytes do not lead to the checkpoint's root (${err.reason}); it was changed after it was logged`);
      continue;
    }
    // Included, so these are the logged bytes; a malformed or foreign entry would be a writer's bug.
    if (formProblem !== undefined) {
      fail('entry_malformed', `entry ${e.index} is in the log but is not a valid entry: ${formProblem}`);
      continue;
    }
    if (entry!.index !== e.index) {
      fail('entry_mismatch', `the entry at index ${e.index} says it is entry ${entry!.index}`);
      continue;
    }
    if (entry!.sessionId !== ev.sessionId) {
      fail('entry_mismatch', `entry ${e.index} belongs to session ${entry!.sessionId}, not ${ev.sessionId}`);
      continue;
    }
    check.ok = true;
  }

  // 3. The record: its signature, its entry is the logged one, its checkpoint is a prefix of ours.
  if (ev.record !== null) {
    const rec: NonNullable<EvidenceReport['record']> = { ok: false };
    report.record = rec;
    const fail = (kind: EvidenceProblemKind, message: string) => {
      rec.problem = { kind, ...(rec.index !== undefined ? { index: rec.index } : {}), message };
      problems.push(rec.problem);
    };
    // Expiry is about using a record, not about its integrity: check it as of its own issuance.
    let issuedAt: Date | undefined;
    try {
      const rEntry = (ev.record as { entry?: unknown }).entry;
      if (typeof rEntry === 'string') issuedAt = new Date(decodeEntry(new TextEncoder().encode(rEntry)).time);
    } catch {
      issuedAt = undefined; // verifyRecord reports the bad entry
    }
    // The record exactly as issued: no field beside the format's, the JWS in canonical base64url
    // (decoders ignore a last character's unused bits, so a changed byte there would go unseen).
    const strict = recordBundleSchema.strict().safeParse(ev.record);
    const jwsParts = strict.success ? strict.data.jws.split('.') : [];
    const canonical = jwsParts.length === 3 && jwsParts.every((p) => {
      try {
        return toBase64Url(fromBase64Url(p)) === p;
      } catch {
        return false;
      }
    });
    const res = !strict.success
      ? ({ ok: false, problem: { kind: 'malformed', message: `not a record bundle: ${strict.error.issues.slice(0, 2).map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ')}` } } as const)
      : !canonical
        ? ({ ok: false, problem: { kind: 'malformed', message: 'the JWS is not in canonical base64url' } } as const)
        : await verifyRecord(ev.record, {
      keys,
      origin,
      ...(issuedAt ? { now: issuedAt } : {}),
      sha256: hash,
      ...(opts.ed25519Verify ? { ed25519Verify: opts.ed25519Verify } : {}),
    });
    if (!res.ok) {
      fail('record', `the verification record does not verify: ${res.problem.kind}: ${res.problem.message}`);
    } else {
      const c = res.claims;
      Object.assign(rec, { index: c.ledgerIndex, jti: c.jti, kid: res.kid, decision: c.decision, tellerId: c.tellerId, checkpointSize: res.checkpoint.size, claims: c as unknown as Record<string, unknown> });
      const logged = byIndex.get(c.ledgerIndex);
      const recordEntryBytes = new TextEncoder().encode((ev.record as { entry: string }).entry);
      if (!logged) fail('record_not_in_log', `the record's entry ${c.ledgerIndex} is not among the session's entries`);
      else if (!bytesEqual(logged.bytes, recordEntryBytes)) fail('record_not_in_log', `the record's entry differs from the logged entry ${c.ledgerIndex}`);
      else if (!logged.check.ok) fail('record_not_in_log', `the record's entry ${c.ledgerIndex} failed its own check`);
      else if (!cp) fail('record_inconsistent', 'no verified checkpoint to relate the record\'s checkpoint to');
      else if (res.checkpoint.size > cp.size) fail('record_inconsistent', `the record's checkpoint (size ${res.checkpoint.size}) is newer than the evidence's (size ${cp.size})`);
      else {
        try {
          checkConsistency(res.checkpoint.size, cp.size, (ev.recordConsistency ?? []).map(fromBase64), fromBase64(res.checkpoint.rootHash), cp.rootHash, hash);
          rec.ok = true;
        } catch (err) {
          if (!(err instanceof ProofError)) throw err;
          fail('record_inconsistent', `the log the record was issued in is not a prefix of the evidence's log: ${err.reason}`);
        }
      }
    }
  }

  report.ok = problems.length === 0;
  return report;
}

/** An async or sync SHA-256 for blobs (WebCrypto in a browser, node:crypto in the CLI). */
export type BlobDigest = (data: Uint8Array) => Promise<Uint8Array> | Uint8Array;

export const webCryptoDigest: BlobDigest = async (data) => {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return portableSha256(data);
  return new Uint8Array(await subtle.digest('SHA-256', data as BufferSource));
};

/**
 * Checks blobs against the verified entries and the record: every blob the verified entries name
 * must be supplied and hash to that name; every hash the record names must be one the entries
 * name; a supplied blob no verified entry names is a problem too. `bytesOf` returns a blob's
 * bytes, or undefined when it is not available. Adds to `report` (blobs, problems, ok).
 */
export async function checkBlobs(
  report: EvidenceReport,
  refs: readonly BlobRef[],
  bytesOf: (ref: BlobRef) => Promise<Uint8Array | undefined> | Uint8Array | undefined,
  digest: BlobDigest = webCryptoDigest,
): Promise<BlobCheck[]> {
  const named = new Map<string, { kind: BlobKind; entryIndex: number }>();
  for (const e of report.entries) {
    if (!e.ok || !e.entry) continue;
    const b = blobNamedBy(e.entry);
    if (b && !named.has(b.sha256)) named.set(b.sha256, { kind: b.kind, entryIndex: e.index });
  }
  const checks: BlobCheck[] = [];
  const add = (c: BlobCheck) => {
    checks.push(c);
    report.blobs.push(c);
    if (c.problem) report.problems.push(c.problem);
  };
  const supplied = new Set<string>();
  for (const ref of refs) {
    const n = named.get(ref.sha256);
    const c: BlobCheck = { kind: ref.kind, sha256: ref.sha256, entryIndex: ref.entryIndex, ok: false };
    if (!n || n.kind !== ref.kind) {
      c.problem = { kind: 'blob_unnamed', sha256: ref.sha256, index: ref.entryIndex, message: `${ref.kind} ${ref.sha256} is not named by any verified entry of the session` };
      add(c);
      continue;
    }
    supplied.add(ref.sha256);
    const bytes = ref.missing ? undefined : await bytesOf(ref);
    if (!bytes) {
      c.problem = { kind: 'blob_missing', sha256: ref.sha256, index: n.entryIndex, message: `${ref.kind} ${ref.sha256} (named by entry ${n.entryIndex}) is not supplied${ref.missing ? ` (the server reports it ${ref.missing})` : ''}` };
      add(c);
      continue;
    }
    c.bytes = bytes.length;
    const actual = toHex(await digest(bytes));
    if (actual !== ref.sha256) {
      c.problem = { kind: 'blob_mismatch', sha256: ref.sha256, index: n.entryIndex, message: `${ref.kind} named by entry ${n.entryIndex} should hash to ${ref.sha256}; the supplied bytes hash to ${actual}` };
    } else if (ref.kind === 'recording' && ref.bytes !== null && ref.bytes !== bytes.length) {
      c.problem = { kind: 'blob_size', sha256: ref.sha256, index: n.entryIndex, message: `the recording is ${bytes.length} bytes; its entry says ${ref.bytes}` };
    } else {
      c.ok = true;
    }
    add(c);
  }
  for (const [sha, n] of named) {
    if (supplied.has(sha)) continue;
    add({ kind: n.kind, sha256: sha, entryIndex: n.entryIndex, ok: false, problem: { kind: 'blob_missing', sha256: sha, index: n.entryIndex, message: `${n.kind} ${sha} named by entry ${n.entryIndex} is not in the evidence` } });
  }
  if (report.record?.ok && report.record.claims) {
    for (const b of blobsNamedByClaims(report.record.claims)) {
      if (named.get(b.sha256)?.kind === b.kind) continue;
      const problem: EvidenceProblem = { kind: 'blob_unnamed', sha256: b.sha256, message: `the record names ${b.kind} ${b.sha256}, which no verified entry of the session names` };
      report.problems.push(problem);
      report.record.ok = false;
      report.record.problem ??= problem;
    }
  }
  report.ok = report.problems.length === 0;
  return checks;
}

// ---- the bundle -------------------------------------------------------------------------------

export interface BundleReport extends EvidenceReport {
  manifest?: BundleManifest;
  /** Files in the archive the manifest does not mention (reported, not a failure). */
  extraFiles: string[];
}

function malformedBundle(message: string): BundleReport {
  const p: EvidenceProblem = { kind: 'malformed', message };
  return { ok: false, sessionId: '', origin: '', checkpoint: { ok: false, signedBy: [], keys: 'bundled', problem: p }, entries: [], record: null, blobs: [], problems: [p], extraFiles: [] };
}

/**
 * Checks an evidence bundle (the tar's bytes) offline: everything verifySessionEvidence checks,
 * plus every blob's bytes. Never throws for a bad bundle.
 */
export async function verifyBundle(tar: Uint8Array, opts: EvidenceCheckOptions & { digest?: BlobDigest } = {}): Promise<BundleReport> {
  let files: Map<string, Uint8Array>;
  try {
    files = new Map(readTar(tar).map((f) => [f.name, f.data]));
  } catch (err) {
    if (err instanceof TarError) return malformedBundle(`not a readable bundle: ${err.message}`);
    throw err;
  }
  const text = (name: string): string | undefined => {
    const b = files.get(name);
    if (!b) return undefined;
    try {
      return fromUtf8(b);
    } catch {
      return undefined;
    }
  };
  let manifest: BundleManifest;
  try {
    const parsed = bundleManifestSchema.safeParse(JSON.parse(text('manifest.json') ?? 'null'));
    if (!parsed.success) return malformedBundle(`manifest.json is not a bundle manifest: ${parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    manifest = parsed.data;
  } catch {
    return malformedBundle('manifest.json is missing or not JSON');
  }
  const used = new Set(['manifest.json', manifest.checkpoint, manifest.keys]);
  let keys: unknown;
  try {
    keys = JSON.parse(text(manifest.keys) ?? 'null');
  } catch {
    keys = null;
  }
  let record: unknown = null;
  if (manifest.record) {
    used.add(manifest.record);
    try {
      record = JSON.parse(text(manifest.record) ?? 'null');
    } catch {
      record = { malformed: true };
    }
    record ??= { missing: true };
  }
  const evidence: SessionEvidence = {
    format: EVIDENCE_FORMAT,
    version: 1,
    sessionId: manifest.sessionId,
    origin: manifest.origin,
    checkpoint: text(manifest.checkpoint) ?? '',
    keys: (keys ?? { keys: [] }) as SessionEvidence['keys'],
    entries: manifest.entries.map((e) => {
      if (e.file) used.add(e.file);
      const b = e.file ? files.get(e.file) : undefined;
      return {
        index: e.index,
        bytes: b ? toBase64(b) : null,
        proof: e.proof,
        ...(b ? {} : { unreadable: e.unreadable ?? (e.file ? `${e.file} is missing from the bundle` : 'not in the bundle') }),
      };
    }),
    record,
    recordConsistency: manifest.recordConsistency,
    blobs: manifest.blobs.map(({ file: _f, ...ref }) => ref),
  };
  const report: BundleReport = { ...(await verifySessionEvidence(evidence, opts)), manifest, extraFiles: [] };
  const fileOf = new Map(manifest.blobs.map((b) => [b.sha256, b.file]));
  for (const b of manifest.blobs) if (b.file) used.add(b.file);
  await checkBlobs(report, evidence.blobs, (ref) => {
    const f = fileOf.get(ref.sha256);
    return f ? files.get(f) : undefined;
  }, opts.digest ?? (opts.sha256 ? (d) => opts.sha256!(d) : webCryptoDigest));
  report.extraFiles = [...files.keys()].filter((n) => !used.has(n));
  return report;
}

/**
 * Assembles a session's evidence for the compliance API (the JSON the page verifies) and streams
 * it as the evidence bundle (a tar; format and checks in src/ledger/bundle.ts). Everything comes
 * from the ledger through its interface (entries as stored, proofs, a signed checkpoint), the
 * key ring's public keys, the blob store (each blob verified first), and the session store only
 * for the record's JWS, which the ledger does not hold (its entry commits the claims).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { blobFileName, blobNamedBy, BUNDLE_FORMAT, entryFileName, EVIDENCE_FORMAT, type BlobRef, type BundleManifest, type SessionEvidence } from '../ledger/bundle.ts';
import { toBase64, utf8 } from '../ledger/bytes.ts';
import { parseCheckpoint } from '../ledger/checkpoint.ts';
import type { Jwks } from '../ledger/keys.ts';
import { parseNote } from '../ledger/note.ts';
import type { RecordBundle } from '../ledger/record-claims.ts';
import { tarEnd, tarHeader, tarPadding } from '../ledger/tar.ts';
import type { Ledger, LedgerEntry, SignedCheckpoint, StoredEntry } from '../ledger/types.ts';
import type { VerifiedBlobs } from './blob-files.ts';
import { isEntryDamage } from './session-index.ts';

export interface EvidenceSources {
  ledger: Ledger;
  keys: { jwks(): Jwks };
  blobs: VerifiedBlobs;
  /** The record as issued (JWS, entry, proof, checkpoint), if the session store still has it. */
  recordOf(sessionId: string): Promise<RecordBundle | undefined>;
}

export interface AssembledEvidence {
  evidence: SessionEvidence;
  /** Decoded entries the server could read (for display; the page checks the bytes itself). */
  entries: (LedgerEntry | null)[];
  /** Where each available blob is, for the bundle. */
  blobPaths: Map<string, string>;
  /** Facts the officer should know that are not failures of the evidence. */
  notes: string[];
}

const MIME: Record<string, string> = { jpeg: 'image/jpeg', jpg: 'image/jpeg', png: 'image/png' };

/** A checkpoint covering every index below `size`: the newest, or a freshly signed one. */
async function checkpointCovering(ledger: Ledger, size: number): Promise<SignedCheckpoint> {
  const latest = ledger.latestCheckpoint();
  if (latest && latest.size >= size) return latest;
  return ledger.checkpoint();
}

export async function assembleEvidence(src: EvidenceSources, sessionId: string, indexes: readonly number[]): Promise<AssembledEvidence> {
  const { ledger } = src;
  const notes: string[] = [];
  const maxIndex = indexes.length ? Math.max(...indexes) : -1;
  const cp = await checkpointCovering(ledger, maxIndex + 1);

  const entries: SessionEvidence['entries'] = [];
  const decoded: (LedgerEntry | null)[] = [];
  // Contiguous runs are read in one call; a run with a damaged entry is read again one by one,
  // so only that entry is reported unreadable.
  for (let k = 0; k < indexes.length; ) {
    let j = k + 1;
    while (j < indexes.length && j - k < 1000 && indexes[j] === indexes[j - 1]! + 1) j++;
    const run = indexes.slice(k, j);
    let stored: (StoredEntry | Error)[];
    try {
      stored = await ledger.getEntries(run[0]!, run.at(-1)! + 1);
    } catch (err) {
      if (!isEntryDamage(err)) throw err;
      stored = [];
      for (const i of run) {
        try {
          stored.push((await ledger.getEntries(i, i + 1))[0]!);
        } catch (e) {
          if (!isEntryDamage(e)) throw e;
          stored.push(e as Error);
        }
      }
    }
    for (const [n, i] of run.entries()) {
      const proof = (await ledger.inclusionProof(i, cp.size)).map(toBase64);
      const st = stored[n]!;
      if (st instanceof Error) {
        entries.push({ index: i, bytes: null, proof, unreadable: st.message.slice(0, 500) });
        decoded.push(null);
      } else {
        entries.push({ index: i, bytes: toBase64(st.bytes), proof });
        decoded.push(st.entry);
      }
    }
    k = j;
  }

  // The record, with a consistency proof from the log it was issued in to this checkpoint.
  const record = (await src.recordOf(sessionId)) ?? null;
  let recordConsistency: string[] | null = null;
  if (record) {
    try {
      const size = parseCheckpoint(parseNote(record.checkpoint).text).size;
      if (size <= cp.size) recordConsistency = (await ledger.consistencyProof(size, cp.size)).map(toBase64);
    } catch {
      recordConsistency = null; // a malformed record checkpoint: the verifier reports it
    }
  } else if (decoded.some((e) => e?.type === 'record.issued')) {
    notes.push('The session has a record.issued entry, but the signed record (JWS) is no longer in the session store; the entry itself is verified.');
  }

  // The blobs the entries name, each verified against its SHA-256 before it is offered.
  const blobs: BlobRef[] = [];
  const blobPaths = new Map<string, string>();
  for (let k = 0; k < decoded.length; k++) {
    const e = decoded[k];
    if (!e) continue;
    const named = blobNamedBy(e);
    if (!named || blobs.some((b) => b.sha256 === named.sha256)) continue;
    const p = e.payload as Record<string, unknown>;
    const state = await src.blobs.check(named.sha256);
    const mimeType = named.kind === 'recording' ? (typeof p.mimeType === 'string' ? p.mimeType : 'video/webm') : (MIME[String(p.format)] ?? 'application/octet-stream');
    const bytes = named.kind === 'recording' && typeof p.bytes === 'number' ? p.bytes : state.ok ? state.size : null;
    blobs.push({ kind: named.kind, sha256: named.sha256, bytes, mimeType, entryIndex: indexes[k]!, ...(state.ok ? {} : { missing: state.reason }) });
    if (state.ok) blobPaths.set(named.sha256, state.path);
  }

  return {
    evidence: {
      format: EVIDENCE_FORMAT,
      version: 1,
      sessionId,
      origin: ledger.origin,
      checkpoint: cp.note,
      keys: src.keys.jwks() as unknown as SessionEvidence['keys'],
      entries,
      record,
      recordConsistency,
      blobs,
    },
    entries: decoded,
    blobPaths,
    notes,
  };
}

export function bundleManifest(a: AssembledEvidence, createdBy: string, now = new Date()): BundleManifest {
  const ev = a.evidence;
  return {
    format: BUNDLE_FORMAT,
    version: 1,
    sessionId: ev.sessionId,
    origin: ev.origin,
    createdAt: now.toISOString(),
    createdBy,
    checkpoint: 'checkpoint.txt',
    keys: 'jwks.json',
    record: ev.record ? 'record.json' : null,
    recordConsistency: ev.recordConsistency,
    entries: ev.entries.map((e) => ({
      index: e.index,
      file: e.bytes === null ? null : entryFileName(e.index),
      proof: e.proof,
      ...(e.unreadable ? { unreadable: e.unreadable } : {}),
    })),
    blobs: ev.blobs.map((b) => ({ ...b, file: a.blobPaths.has(b.sha256) ? blobFileName(b) : null })),
  };
}

/**
 * The bundle as a stream: small files from memory, blobs streamed from disk (a recording is never
 * held in memory). Blob sizes were taken when they were verified; content-addressed blobs do not
 * change, and a file that shrank meanwhile makes the stream fail rather than emit a bad archive.
 */
export function bundleStream(a: AssembledEvidence, manifest: BundleManifest): Readable {
  const mtime = Math.floor(Date.parse(manifest.createdAt) / 1000);
  const small: { name: string; data: Uint8Array }[] = [
    { name: 'manifest.json', data: utf8(JSON.stringify(manifest, null, 2) + '\n') },
    { name: 'checkpoint.txt', data: utf8(a.evidence.checkpoint) },
    { name: 'jwks.json', data: utf8(JSON.stringify(a.evidence.keys, null, 2) + '\n') },
  ];
  if (a.evidence.record) small.push({ name: 'record.json', data: utf8(JSON.stringify(a.evidence.record, null, 2) + '\n') });
  for (const e of a.evidence.entries) if (e.bytes !== null) small.push({ name: entryFileName(e.index), data: Buffer.from(e.bytes, 'base64') });
  const blobs = manifest.blobs.filter((b) => b.file !== null);

  async function* generate(): AsyncGenerator<Uint8Array> {
    for (const f of small) {
      yield tarHeader(f.name, f.data.length, mtime);
      yield f.data;
      yield tarPadding(f.data.length);
    }
    for (const b of blobs) {
      const file = a.blobPaths.get(b.sha256)!;
      const state = await stat(file);
      yield tarHeader(b.file!, state.size, mtime);
      let written = 0;
      for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        written += chunk.length;
        if (written > state.size) throw new Error(`${file} grew while it was bundled`);
        yield chunk;
      }
      if (written !== state.size) throw new Error(`${file} shrank while it was bundled`);
      yield tarPadding(state.size);
    }
    yield tarEnd();
  }
  return Readable.from(generate(), { objectMode: false });
}

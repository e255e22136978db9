/**
 * Reads a ledger directory for the audit (Node): the LEDGER file, the checkpoint log, then every
 * segment in order, frame by frame, into a LedgerAuditor. Nothing in the directory is trusted:
 * the keys come from the caller.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { MAX_ENTRY_BYTES } from './entry.ts';
import { CHECKPOINTS_FILE, META_FILE, SEGMENTS_DIR } from './file-ledger.ts';
import { nodeEd25519Verify, nodeSha256 } from './node-crypto.ts';
import { CHECKPOINT_MAGIC, decodeHeader, FRAME_OVERHEAD, HEADER_BYTES, parseSegmentFileName, scanFrames, SEGMENT_MAGIC } from './segments.ts';
import { LedgerAuditor, type AuditorOptions, type AuditReport } from './verify.ts';

export interface AuditDirOptions extends Omit<AuditorOptions, 'sha256' | 'ed25519Verify'> {
  /** Signed checkpoints obtained earlier (notes): the ledger must contain each. */
  trusted?: { note: string; label: string }[];
  /** Called now and then as segments are read: bytes done, bytes in all segments, entries read. */
  onProgress?: (done: number, total: number, entries: number) => void;
}

/** Resolves DIR to the ledger directory: DIR itself, or DIR/ledger for a data directory. */
export async function resolveLedgerDir(dir: string): Promise<string> {
  const direct = await stat(path.join(dir, SEGMENTS_DIR)).catch(() => undefined);
  if (direct?.isDirectory()) return dir;
  const nested = await stat(path.join(dir, 'ledger', SEGMENTS_DIR)).catch(() => undefined);
  if (nested?.isDirectory()) return path.join(dir, 'ledger');
  throw new Error(`${dir} is not a ledger directory (no ${SEGMENTS_DIR}/ in it or in ${path.join(dir, 'ledger')})`);
}

export async function auditLedgerDir(dir: string, opts: AuditDirOptions): Promise<AuditReport> {
  const auditor = new LedgerAuditor({ ...opts, sha256: nodeSha256, ed25519Verify: nodeEd25519Verify });

  let declared: string | undefined;
  try {
    const meta = JSON.parse(await readFile(path.join(dir, META_FILE), 'utf8')) as { origin?: unknown };
    if (typeof meta.origin === 'string') declared = meta.origin;
  } catch {
    declared = undefined;
  }
  auditor.setOrigin(declared);

  // Checkpoints first: their sizes tell where to compare roots while the entries stream by.
  const cpFile = path.join(dir, CHECKPOINTS_FILE);
  const cpBuf = await readFile(cpFile).catch(() => undefined);
  if (!cpBuf) {
    auditor.problem({ kind: 'checkpoint_log', message: `${CHECKPOINTS_FILE} is missing`, file: cpFile });
  } else if ('problem' in decodeHeader(cpBuf, CHECKPOINT_MAGIC)) {
    auditor.problem({ kind: 'checkpoint_log', message: `${CHECKPOINTS_FILE} has a bad header`, file: cpFile, offset: 0 });
  } else {
    const scan = scanFrames(cpBuf, HEADER_BYTES, 64 * 1024);
    for (const f of scan.frames) await auditor.checkpoint(f.payload, { file: cpFile, offset: f.offset });
    if (scan.problem) {
      auditor.problem({
        kind: 'checkpoint_log',
        message: `${CHECKPOINTS_FILE}: ${scan.problem.kind} frame at offset ${scan.problem.offset}; ${cpBuf.length - scan.problem.offset} bytes after it are unreadable`,
        file: cpFile,
        offset: scan.problem.offset,
      });
    }
  }
  for (const t of opts.trusted ?? []) await auditor.trustedCheckpoint(t.note, t.label);

  const segDir = path.join(dir, SEGMENTS_DIR);
  const names = (await readdir(segDir))
    .map((name) => ({ name, first: parseSegmentFileName(name) }))
    .filter((x): x is { name: string; first: number } => x.first !== undefined)
    .sort((a, b) => a.first - b.first);
  const sizes = await Promise.all(names.map(async (n) => (await stat(path.join(segDir, n.name))).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  let done = 0;
  for (const [i, { name, first }] of names.entries()) {
    const file = path.join(segDir, name);
    const buf = await readFile(file);
    const header = decodeHeader(buf, SEGMENT_MAGIC);
    auditor.segment(file, first, header);
    if ('problem' in header) {
      done += sizes[i]!;
      continue;
    }
    let pos = HEADER_BYTES;
    for (;;) {
      const scan = scanFrames(buf, pos, MAX_ENTRY_BYTES, (f) => {
        auditor.entry(f.payload, { file, offset: f.offset });
        if (opts.onProgress && auditor.entriesRead % 4096 === 0) opts.onProgress(done + f.offset, total, auditor.entriesRead);
      });
      if (!scan.problem) break;
      const at = scan.problem.offset;
      auditor.frameProblem(scan.problem.kind, { file, offset: at, trailingBytes: buf.length - at });
      if (scan.problem.kind !== 'crc') break;
      // The length looked right and only the content fails its CRC: count the frame as the
      // (changed) entry it is and read on.
      const len = buf.readUInt32BE(at);
      auditor.entry(buf.subarray(at + FRAME_OVERHEAD, at + FRAME_OVERHEAD + len), { file, offset: at });
      pos = at + FRAME_OVERHEAD + len;
    }
    done += sizes[i]!;
    opts.onProgress?.(done, total, auditor.entriesRead);
  }
  return auditor.finish();
}

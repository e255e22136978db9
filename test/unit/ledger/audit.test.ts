import { cpSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, appendFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toBase64, utf8 } from '../../../src/ledger/bytes.ts';
import { auditLedgerDir } from '../../../src/ledger/audit-fs.ts';
import { formatCheckpoint, parseCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { CHECKPOINTS_FILE, FileLedger, SEGMENTS_DIR } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { parseNote, signNote } from '../../../src/ledger/note.ts';
import { encodeFrame, FRAME_OVERHEAD, HEADER_BYTES, scanFrames } from '../../../src/ledger/segments.ts';
import { entryInput, silentLogger, tempDir } from './helpers.ts';

const ORIGIN = 'bank.example/ledger';
let tmp: ReturnType<typeof tempDir>;
let keyRing: KeyRing;
let dir: string;
let segDir: string;

async function build(n: number, checkpointEvery = 5) {
  const ledger = await FileLedger.open({ dir, origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000, segmentBytes: 3000 });
  for (let i = 0; i < n; i++) {
    await ledger.append(entryInput(i));
    if ((i + 1) % checkpointEvery === 0) await ledger.checkpoint();
  }
  const root = toBase64(await ledger.rootHash());
  await ledger.close();
  return root;
}

beforeEach(async () => {
  tmp = tempDir();
  keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log: silentLogger() });
  dir = path.join(tmp.dir, 'ledger');
  segDir = path.join(dir, SEGMENTS_DIR);
});
afterEach(() => tmp.remove());

const audit = (extra: Partial<Parameters<typeof auditLedgerDir>[1]> = {}) => auditLedgerDir(dir, { keys: keyRing.publicKeys(), ...extra });

/** Every frame of every segment: file, offset, payload. */
function frames() {
  const out: { file: string; offset: number; payload: Buffer; index: number }[] = [];
  let index = 0;
  for (const name of readdirSync(segDir).sort()) {
    const file = path.join(segDir, name);
    for (const f of scanFrames(readFileSync(file), HEADER_BYTES, 1 << 20).frames) out.push({ file, offset: f.offset, payload: Buffer.from(f.payload), index: index++ });
  }
  return out;
}

function rewrite(file: string, edit: (buf: Buffer) => Buffer): void {
  writeFileSync(file, edit(readFileSync(file)));
}

describe('auditing a ledger directory', () => {
  it('passes an intact ledger and summarizes it', async () => {
    const root = await build(23);
    const report = await audit({ origin: ORIGIN });
    expect(report).toMatchObject({ ok: true, origin: ORIGIN, entries: 23, rootHash: root, problemCount: 0, unsignedEntries: 0 });
    expect(report.segments).toBeGreaterThan(1);
    expect(report.checkpoints.count).toBe(report.checkpoints.verified);
    expect(report.checkpoints.count).toBeGreaterThanOrEqual(5);
    expect(report.checkpoints.byKey).toEqual({ [keyRing.activeKid]: report.checkpoints.count });
    expect(report.checkpoints.latest?.size).toBe(23);
    expect(report.firstProblem).toBeUndefined();
  });

  it('passes across a key rotation, with the checkpoints counted per key', async () => {
    await build(10);
    const old = keyRing.activeKid;
    await keyRing.rotate();
    const ledger = await FileLedger.open({ dir, origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000 });
    await ledger.append(entryInput(10));
    await ledger.close();
    const report = await audit();
    expect(report.ok).toBe(true);
    expect(Object.keys(report.checkpoints.byKey).sort()).toEqual([old, keyRing.activeKid].sort());
  });
});

describe('tampering: the audit names the problem and where', () => {
  it('one byte of an entry changed', async () => {
    await build(20);
    const f = frames()[7]!;
    rewrite(f.file, (b) => {
      const at = f.offset + FRAME_OVERHEAD + f.payload.indexOf('"n":7') + 4;
      b[at] = '8'.charCodeAt(0);
      return b;
    });
    const report = await audit();
    expect(report.ok).toBe(false);
    expect(report.firstProblem).toMatchObject({ kind: 'frame_crc', index: 7, file: f.file, offset: f.offset });
    // The changed entry no longer matches the checkpoints that signed it.
    expect(report.problems.filter((p) => p.kind === 'checkpoint_root_mismatch').map((p) => p.index)).toContain(10);
  });

  it('one byte of an entry changed by someone who also fixed the CRC', async () => {
    await build(20);
    const f = frames()[7]!;
    rewrite(f.file, (b) => {
      const payload = Buffer.from(f.payload.toString().replace('"n":7', '"n":8'));
      encodeFrame(payload).copy(b, f.offset);
      return b;
    });
    const report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'checkpoint_root_mismatch', index: 10 });
    expect(report.firstProblem?.message).toContain('before 10');
    expect(report.problems.every((p) => p.kind === 'checkpoint_root_mismatch' && p.index! >= 10)).toBe(true);
  });

  it('an entry deleted', async () => {
    await build(20);
    const f = frames()[12]!;
    rewrite(f.file, (b) => Buffer.concat([b.subarray(0, f.offset), b.subarray(f.offset + FRAME_OVERHEAD + f.payload.length)]));
    const report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'entry_missing', index: 12 });
    expect(report.problems.map((p) => p.kind)).toContain('checkpoint_beyond_log');
  });

  it('a whole segment file deleted', async () => {
    await build(30);
    const names = readdirSync(segDir).sort();
    expect(names.length).toBeGreaterThan(2);
    const victim = path.join(segDir, names[1]!);
    const first = Number(names[1]!.slice(0, 16));
    const count = frames().filter((f) => f.file === victim).length;
    rmSync(victim);
    const report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'entry_missing', index: first });
    expect(report.firstProblem?.message).toContain(`${count} entries are missing`);
    expect(report.problems.filter((p) => p.kind === 'entry_missing')).toHaveLength(1);
  });

  it('two entries swapped', async () => {
    await build(20);
    const all = frames();
    const [a, b] = [all[3]!, all[4]!];
    expect(a.file).toBe(b.file);
    rewrite(a.file, (buf) => Buffer.concat([buf.subarray(0, a.offset), encodeFrame(b.payload), encodeFrame(a.payload), buf.subarray(b.offset + FRAME_OVERHEAD + b.payload.length)]));
    const report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'entries_swapped', index: 3 });
    expect(report.problems.filter((p) => p.kind.startsWith('entr')).map((p) => p.kind)).toEqual(['entries_swapped']);
  });

  it('the ledger truncated at an entry boundary, and inside an entry', async () => {
    await build(20);
    const all = frames();
    const last = readdirSync(segDir).sort().at(-1)!;
    const lastFile = path.join(segDir, last);
    const cut = all.filter((f) => f.file === lastFile).at(-2)!;
    truncateSync(lastFile, cut.offset);
    let report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'checkpoint_beyond_log', index: cut.index });
    truncateSync(lastFile, cut.offset - 5);
    report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'frame_truncated', index: cut.index - 1 });
  });

  it('a forged entry appended', async () => {
    await build(20);
    const lastFile = path.join(segDir, readdirSync(segDir).sort().at(-1)!);
    const forged = `{"actor":"alice","index":20,"payload":{"decision":"approved"},"sessionId":"session-x","time":"2026-01-01T00:00:00.000Z","type":"record.issued"}`;
    appendFileSync(lastFile, encodeFrame(utf8(forged)));
    const report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'unsigned_entries', index: 20 });
    expect(report.unsignedEntries).toBe(1);
    // A live ledger may have a short unsigned tail; the auditor can allow it, and then sees no problem.
    expect((await audit({ allowUnsignedTail: true })).ok).toBe(true);
  });

  it('a checkpoint replaced by one signed with another key', async () => {
    await build(20);
    const other = await KeyRing.open({ dir: path.join(tmp.dir, 'other-keys'), log: silentLogger() });
    const cpFile = path.join(dir, CHECKPOINTS_FILE);
    const buf = readFileSync(cpFile);
    const cps = scanFrames(buf, HEADER_BYTES, 1 << 16).frames;
    const victim = cps[1]!;
    const cp = parseCheckpoint(parseNote(Buffer.from(victim.payload).toString()).text);
    const forged = encodeFrame(utf8(await signNote(formatCheckpoint(cp), [other.noteSigner(ORIGIN)])));
    writeFileSync(cpFile, Buffer.concat([buf.subarray(0, victim.offset), forged, buf.subarray(victim.offset + FRAME_OVERHEAD + victim.payload.length)]));
    const report = await audit();
    expect(report.firstProblem).toMatchObject({ kind: 'checkpoint_signature', index: cp.size });
    expect(report.checkpoints.verified).toBe(report.checkpoints.count - 1);
  });

  it('the whole ledger rolled back to an older state (caught with a checkpoint kept from before)', async () => {
    await build(10);
    const older = path.join(tmp.dir, 'older');
    cpSync(dir, older, { recursive: true });
    const ledger = await FileLedger.open({ dir, origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000 });
    for (let i = 10; i < 15; i++) await ledger.append(entryInput(i));
    const kept = (await ledger.checkpoint()).note; // e.g. from a record handed to the bank
    await ledger.close();
    rmSync(dir, { recursive: true });
    cpSync(older, dir, { recursive: true });
    // On its own the older state is self-consistent...
    expect((await audit()).ok).toBe(true);
    // ...but it no longer contains what was signed before.
    const report = await audit({ trusted: [{ note: kept, label: 'kept.checkpoint' }] });
    expect(report.firstProblem).toMatchObject({ kind: 'rollback', index: 10 });
    expect(report.firstProblem?.message).toContain('kept.checkpoint covers 15 entries');
  });

  it('a history rewritten after a rollback (a fork of a checkpoint kept from before)', async () => {
    await build(10);
    const older = path.join(tmp.dir, 'older');
    cpSync(dir, older, { recursive: true });
    let ledger = await FileLedger.open({ dir, origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000 });
    for (let i = 10; i < 15; i++) await ledger.append(entryInput(i));
    const kept = (await ledger.checkpoint()).note;
    await ledger.close();
    rmSync(dir, { recursive: true });
    cpSync(older, dir, { recursive: true });
    ledger = await FileLedger.open({ dir, origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000 });
    for (let i = 10; i < 15; i++) await ledger.append(entryInput(i + 100));
    await ledger.close();
    const report = await audit({ trusted: [{ note: kept, label: 'kept.checkpoint' }] });
    expect(report.firstProblem).toMatchObject({ kind: 'fork', index: 15 });
  });

  it('a checkpoint from elsewhere that does not verify is reported, not trusted', async () => {
    await build(3);
    const other = await KeyRing.open({ dir: path.join(tmp.dir, 'other-keys'), log: silentLogger() });
    const note = await signNote(formatCheckpoint({ origin: ORIGIN, size: 99, rootHash: new Uint8Array(32), extensions: [] }), [other.noteSigner(ORIGIN)]);
    const report = await audit({ trusted: [{ note, label: 'x' }] });
    expect(report.firstProblem).toMatchObject({ kind: 'trusted_checkpoint_invalid' });
    expect(report.problemCount).toBe(1);
  });

  it('audited with the wrong keys, nothing verifies', async () => {
    await build(6);
    const other = await KeyRing.open({ dir: path.join(tmp.dir, 'other-keys'), log: silentLogger() });
    const report = await audit({ keys: other.publicKeys() });
    expect(report.ok).toBe(false);
    expect(report.checkpoints.verified).toBe(0);
    expect(report.problems.some((p) => p.kind === 'checkpoint_signature')).toBe(true);
    expect(report.problems.some((p) => p.kind === 'no_checkpoint')).toBe(true);
    expect(statSync(dir).isDirectory()).toBe(true);
  });
});

import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { open } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { toBase64 } from '../../../src/ledger/bytes.ts';
import { utf8 } from '../../../src/ledger/bytes.ts';
import { CHECKPOINTS_FILE, FileLedger, LOCK_FILE, META_FILE, SEGMENTS_DIR, type FileLedgerOptions } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { encodeFrame, encodeHeader, HEADER_BYTES, SEGMENT_MAGIC, segmentFileName } from '../../../src/ledger/segments.ts';
import { capturingLogger, entryInput, silentLogger, tempDir } from './helpers.ts';

let cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(extra: Partial<FileLedgerOptions> = {}) {
  const tmp = tempDir();
  const cap = capturingLogger();
  const keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log: silentLogger() });
  const opts: FileLedgerOptions = { dir: path.join(tmp.dir, 'ledger'), origin: 'test.example/ledger', keyRing, log: cap.log, checkpointIntervalMs: 60_000, ...extra };
  const opened: FileLedger[] = [];
  const openLedger = async (o: Partial<FileLedgerOptions> = {}) => {
    const l = await FileLedger.open({ ...opts, ...o });
    opened.push(l);
    return l;
  };
  cleanup.push(async () => {
    for (const l of opened) await l.close();
    tmp.remove();
  });
  return { tmp, opts, keyRing, cap, openLedger, segDir: path.join(opts.dir, SEGMENTS_DIR) };
}

const lastSegment = (segDir: string) => path.join(segDir, readdirSync(segDir).sort().at(-1)!);

describe('file ledger layout', () => {
  it('creates its files, records its origin and lock, and releases the lock on close', async () => {
    const { opts, openLedger, segDir } = await setup();
    const ledger = await openLedger();
    expect(JSON.parse(readFileSync(path.join(opts.dir, META_FILE), 'utf8'))).toMatchObject({ format: 'videoteller-ledger', version: 1, origin: 'test.example/ledger' });
    expect(readFileSync(path.join(opts.dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    expect(readdirSync(segDir)).toEqual([segmentFileName(0)]);
    expect(readFileSync(path.join(segDir, segmentFileName(0))).subarray(0, 8).toString()).toBe(SEGMENT_MAGIC);
    await ledger.append(entryInput(0));
    await ledger.close();
    expect(existsSync(path.join(opts.dir, LOCK_FILE))).toBe(false);
    expect(statSync(path.join(opts.dir, CHECKPOINTS_FILE)).size).toBeGreaterThan(HEADER_BYTES);
  });

  it('rolls to a new segment file past the segment size and reads across them', async () => {
    const { openLedger, segDir, opts } = await setup({ segmentBytes: 2000 });
    const ledger = await openLedger();
    for (let i = 0; i < 60; i++) await ledger.append(entryInput(i));
    const files = readdirSync(segDir).sort();
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(statSync(path.join(segDir, f)).size).toBeLessThanOrEqual(2000 + 400);
    expect((await ledger.getEntries(0, 60)).map((e) => e.entry.index)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    const root = toBase64(await ledger.rootHash());
    await ledger.close();
    const again = await openLedger(opts);
    expect(again.size).toBe(60);
    expect(toBase64(await again.rootHash())).toBe(root);
  });

  it('acknowledges an append only after an fdatasync that began after it was written', async () => {
    const { openLedger, segDir } = await setup();
    const ledger = await openLedger();
    // Watch the real fdatasync of the segment file (it still runs): count the ones completed.
    const probe = await open(path.join(segDir, segmentFileName(0)), 'r');
    const proto = Object.getPrototypeOf(probe) as { datasync(): Promise<void> };
    await probe.close();
    // Each fdatasync gets a number when it starts; `done` is the newest number that has finished.
    let started = 0;
    let done = 0;
    const real = proto.datasync;
    proto.datasync = async function (this: unknown) {
      const n = ++started;
      await real.call(this);
      done = Math.max(done, n);
    };
    try {
      const check = async (i: number) => {
        const calledAt = started;
        await ledger.append(entryInput(i));
        // Some fdatasync that started after this append was called has completed.
        expect(done, `append ${i}`).toBeGreaterThan(calledAt);
      };
      await Promise.all(Array.from({ length: 50 }, (_, i) => check(i)));
      for (let i = 0; i < 5; i++) await check(50 + i);
      // Appends arriving while a commit is in flight wait for the next one, not that one.
      const first = ledger.append(entryInput(100));
      await new Promise((r) => setImmediate(r));
      await Promise.all([first, check(101), check(102)]);
    } finally {
      proto.datasync = real;
    }
  });

  it('group commit: concurrent appends share fsyncs, sequential ones get one each', async () => {
    const { openLedger } = await setup();
    const ledger = await openLedger();
    for (let i = 0; i < 20; i++) await ledger.append(entryInput(i));
    expect(ledger.stats.commits).toBe(20);
    await Promise.all(Array.from({ length: 200 }, (_, i) => ledger.append(entryInput(i))));
    expect(ledger.stats.entries).toBe(220);
    expect(ledger.stats.commits - 20).toBeLessThanOrEqual(3);
  });
});

describe('file ledger locking and configuration', () => {
  it('refuses a second open of the same directory', async () => {
    const { openLedger } = await setup();
    await openLedger();
    await expect(openLedger()).rejects.toMatchObject({ code: 'locked' });
  });

  it('takes over the lock of a process that is gone', async () => {
    const { opts, openLedger, cap } = await setup();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    (await openLedger()).close();
    await new Promise((r) => setTimeout(r, 20));
    writeFileSync(path.join(opts.dir, LOCK_FILE), `${dead}\n`);
    const ledger = await openLedger();
    expect(ledger.size).toBe(0);
    expect(cap.lines().some((l) => l.msg === 'removing a stale ledger lock (its process is gone)')).toBe(true);
  });

  it('refuses to open under another origin', async () => {
    const { openLedger } = await setup();
    await (await openLedger()).close();
    await expect(openLedger({ origin: 'other.example/ledger' })).rejects.toMatchObject({ code: 'config' });
    await expect(openLedger({ origin: 'has space' })).rejects.toMatchObject({ code: 'config' });
  });
});

describe('file ledger recovery', () => {
  async function ledgerWith(n: number, extra: Partial<FileLedgerOptions> = {}) {
    const s = await setup(extra);
    const ledger = await s.openLedger();
    for (let i = 0; i < n; i++) await ledger.append(entryInput(i));
    const root = toBase64(await ledger.rootHash());
    await ledger.close();
    return { ...s, root };
  }

  it('drops a torn frame at the end (half written), keeps every whole entry, and appends on', async () => {
    const { openLedger, segDir, cap, root } = await ledgerWith(10);
    const frame = encodeFrame(utf8('{"actor":"system","index":10,"payload":{},"sessionId":"s","time":"2026-01-01T00:00:00.000Z","type":"t"}'));
    const seg = lastSegment(segDir);
    const before = statSync(seg).size;
    appendFileSync(seg, frame.subarray(0, frame.length - 7));
    const ledger = await openLedger();
    expect(ledger.size).toBe(10);
    expect(toBase64(await ledger.rootHash())).toBe(root);
    expect(statSync(seg).size).toBe(before);
    const warn = cap.lines().find((l) => l.msg === 'dropped a torn tail left by an interrupted write (never acknowledged)');
    expect(warn).toMatchObject({ level: 40, reason: 'truncated', droppedBytes: frame.length - 7, size: 10 });
    expect((await ledger.append(entryInput(10))).index).toBe(10);
  });

  it('drops a tail of zeros (a file extended but never written) and a frame whose CRC does not match', async () => {
    const { openLedger, segDir } = await ledgerWith(6);
    const seg = lastSegment(segDir);
    appendFileSync(seg, Buffer.alloc(4096));
    expect((await openLedger()).size).toBe(6);
  });

  it('drops a last frame with a bad CRC (a torn write of the final block)', async () => {
    const { openLedger, segDir } = await ledgerWith(6);
    const seg = lastSegment(segDir);
    const frame = encodeFrame(utf8('{"x":1}'));
    frame[frame.length - 1] = frame[frame.length - 1]! ^ 0xff;
    appendFileSync(seg, frame);
    const ledger = await openLedger();
    expect(ledger.size).toBe(6);
  });

  it('refuses to open when a frame before the end is damaged (never drops acknowledged entries)', async () => {
    const { openLedger, segDir } = await ledgerWith(10);
    const seg = lastSegment(segDir);
    const buf = readFileSync(seg);
    buf[HEADER_BYTES + 20] = buf[HEADER_BYTES + 20]! ^ 0x01; // inside the first entry
    writeFileSync(seg, buf);
    await expect(openLedger()).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('a whole entry follows') });
    expect(readFileSync(seg)).toEqual(buf); // nothing was dropped
  });

  it('refuses to drop a damaged last entry that a checkpoint covers', async () => {
    const { openLedger, segDir } = await ledgerWith(10);
    const seg = lastSegment(segDir);
    const buf = readFileSync(seg);
    buf[buf.length - 3] = buf[buf.length - 3]! ^ 0x01; // inside entry 9, the last one
    writeFileSync(seg, buf);
    await expect(openLedger()).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('newest checkpoint covers 10') });
    expect(readFileSync(seg)).toEqual(buf);
  });

  it('refuses to open when entries the newest checkpoint covers are gone (cut at a frame boundary)', async () => {
    const { openLedger, segDir } = await ledgerWith(10);
    const seg = lastSegment(segDir);
    const ledger = await openLedger();
    const entries = await ledger.getEntries(0, 10);
    await ledger.close();
    truncateSync(seg, statSync(seg).size - (entries[9]!.bytes.length + 8));
    await expect(openLedger()).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('acknowledged entries are missing') });
  });

  it('refuses to open when an entry was rewritten with a valid CRC (the checkpoint no longer matches)', async () => {
    const { openLedger, segDir } = await ledgerWith(4);
    const seg = lastSegment(segDir);
    const buf = readFileSync(seg);
    const at = buf.indexOf('"n":2');
    buf.write('"n":3', at);
    // Rebuild that frame's CRC as a careful forger would.
    const start = buf.lastIndexOf(Buffer.from('{"actor"'), at) - 8;
    const len = buf.readUInt32BE(start);
    encodeFrame(buf.subarray(start + 8, start + 8 + len)).copy(buf, start);
    writeFileSync(seg, buf);
    await expect(openLedger()).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('does not match the entries') });
  });

  it('removes a new segment whose header a crash cut short, and refuses a gap between segments', async () => {
    const { openLedger, segDir } = await ledgerWith(5);
    writeFileSync(path.join(segDir, segmentFileName(5)), encodeHeader(SEGMENT_MAGIC, 5).subarray(0, 11));
    const ledger = await openLedger();
    expect(ledger.size).toBe(5);
    expect(readdirSync(segDir)).toEqual([segmentFileName(0)]);
    await ledger.append(entryInput(5));
    await ledger.close();
    writeFileSync(path.join(segDir, segmentFileName(9)), encodeHeader(SEGMENT_MAGIC, 9));
    await expect(openLedger()).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('starts at index 9') });
  });

  it('signs a checkpoint on open for entries recovered after a crash', async () => {
    const { openLedger, opts } = await ledgerWith(3);
    // Simulate a crash before the final checkpoint: drop the checkpoint log's last frame.
    const cpFile = path.join(opts.dir, CHECKPOINTS_FILE);
    const ledger = await openLedger();
    expect(ledger.latestCheckpoint()?.size).toBe(3);
    await ledger.append(entryInput(3));
    // Kill the process state without close(): a fresh instance must sign for entry 3 itself.
    (ledger as unknown as { closed: boolean }).closed = true;
    await (ledger as unknown as { release(): Promise<void> }).release();
    const sizeBefore = statSync(cpFile).size;
    const again = await openLedger();
    expect(again.latestCheckpoint()?.size).toBe(4);
    expect(statSync(cpFile).size).toBeGreaterThan(sizeBefore);
  });

  it('stops taking entries after a write error, and recovers on the next open', async () => {
    const { openLedger, cap } = await setup();
    const ledger = await openLedger();
    await ledger.append(entryInput(0));
    // Pull the file out from under it, as a failing disk would.
    await (ledger as unknown as { writeFh: { close(): Promise<void> } }).writeFh.close();
    await expect(ledger.append(entryInput(1))).rejects.toMatchObject({ code: 'failed' });
    await expect(ledger.append(entryInput(2))).rejects.toMatchObject({ code: 'failed' });
    expect(cap.lines().some((l) => l.level === 50 && String(l.msg).startsWith('ledger write failed'))).toBe(true);
    await ledger.close();
    const again = await openLedger();
    expect(again.size).toBe(1);
  });
});

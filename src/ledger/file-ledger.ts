/**
 * The file backend of the ledger (Node), the embedded default.
 *
 *   <dir>/LEDGER              format, version and origin (checked on every open)
 *   <dir>/LOCK                pid of the process that has the ledger open
 *   <dir>/segments/*.seg      append-only segment files of framed entries (segments.ts)
 *   <dir>/checkpoints.log     every signed checkpoint, framed, in the order signed
 *
 * Durability: an append resolves only after its frame is written and fdatasync'ed. Appends that
 * arrive while a write is in flight queue up and share the next write and fdatasync (group
 * commit). Any write error stops the ledger (every later append fails): what reached the disk is
 * then unknown, and restarting runs recovery.
 *
 * Recovery on open reads every segment, checks every frame's length and CRC and every entry's
 * index, and rebuilds the Merkle tree. A damaged tail of the newest segment, no longer than one
 * group commit, is a write cut short by a crash: it held no acknowledged entry (acknowledgement
 * follows fdatasync) and is truncated, with a warning. Anything else (a bad frame elsewhere, a
 * gap, fewer entries than the newest checkpoint covers, a checkpoint that does not match) stops
 * the open with LedgerError('corrupt'): `videoteller verify` then tells what is wrong.
 */
import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger.ts';
import { fromUtf8, utf8 } from './bytes.ts';
import { formatCheckpoint, parseCheckpoint } from './checkpoint.ts';
import { encodePrepared, MAX_ENTRY_BYTES, prepareEntry, type EntryInput, type LedgerEntry, type PreparedEntry } from './entry.ts';
import type { KeyRing } from './keyring.ts';
import { writeFileAtomic } from './keyring.ts';
import { hashLeaf, MerkleTree, type HashFn } from './merkle.ts';
import { nodeEd25519Verify, nodeSha256 } from './node-crypto.ts';
import { NoteError, openNote, parseNote, signNote } from './note.ts';
import {
  CHECKPOINT_MAGIC,
  decodeHeader,
  encodeFrame,
  encodeHeader,
  findFrameAfter,
  FRAME_OVERHEAD,
  HEADER_BYTES,
  parseSegmentFileName,
  scanFrames,
  SEGMENT_MAGIC,
  segmentFileName,
} from './segments.ts';
import { LedgerError, type AppendResult, type Ledger, type SignedCheckpoint, type StoredEntry } from './types.ts';

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_BATCH = 1024;
/** A group commit writes at most this many bytes (plus one entry). */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** The longest damaged tail recovery will drop: one group commit. */
export const MAX_TORN_TAIL = MAX_BATCH_BYTES + FRAME_OVERHEAD + MAX_ENTRY_BYTES;
const MAX_CHECKPOINT_BYTES = 16 * 1024;
export const META_FILE = 'LEDGER';
export const LOCK_FILE = 'LOCK';
export const SEGMENTS_DIR = 'segments';
export const CHECKPOINTS_FILE = 'checkpoints.log';
/** Every entry's canonical JSON starts so (members sorted: "actor" first). */
const ENTRY_MARKER = utf8('{"actor":');

export interface FileLedgerOptions {
  /** The ledger directory (by default `${DATA_DIR}/ledger`). */
  dir: string;
  /** Checkpoint origin (LEDGER_ORIGIN); fixed when the ledger is created. */
  origin: string;
  keyRing: KeyRing;
  log: Logger;
  /** Sign a checkpoint at most this often while entries arrive (CHECKPOINT_INTERVAL_MS). */
  checkpointIntervalMs: number;
  /** Start a new segment file past this size. */
  segmentBytes?: number;
  /** Entries per group commit at most. */
  maxBatch?: number;
  hash?: HashFn;
}

interface Pending {
  prepared: PreparedEntry;
  resolve: (r: AppendResult) => void;
  reject: (err: Error) => void;
}

interface Segment {
  first: number;
  file: string;
  /** Bytes of whole frames (the write position for the newest segment). */
  size: number;
}

/** Growable array of non-negative integers up to 2^53. */
class NumberArray {
  private buf = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.buf.length) {
      const bigger = new Float64Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf[this.length++] = v;
  }
  get(i: number): number {
    return this.buf[i]!;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class FileLedger implements Ledger {
  readonly origin: string;
  private readonly hash: HashFn;
  private readonly tree: MerkleTree;
  private readonly segDir: string;
  private readonly segments: Segment[] = [];
  /** Frame offset of every entry within its segment file. */
  private readonly offsets = new NumberArray();
  private readonly sessions = new Map<string, number[]>();
  private writeFh: FileHandle | undefined;
  private cpFh: FileHandle | undefined;
  private cpPos = 0;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private failure: Error | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;
  private latest: SignedCheckpoint | undefined;
  private cpChain: Promise<unknown> = Promise.resolve();
  private cpPending: { atLeast: number; promise: Promise<SignedCheckpoint> } | undefined;
  private cpTimer: NodeJS.Timeout | undefined;
  private lastCpAt = 0;
  private storedCheckpointNote: string | undefined;
  private storedCheckpointSize = 0;
  private readonly segmentBytes: number;
  private readonly maxBatch: number;
  /** Group commits (write + fdatasync) and the entries they carried. */
  readonly stats = { commits: 0, entries: 0, checkpoints: 0 };

  private constructor(private readonly opts: FileLedgerOptions) {
    this.origin = opts.origin;
    this.hash = opts.hash ?? nodeSha256;
    this.tree = new MerkleTree(this.hash);
    this.segDir = path.join(opts.dir, SEGMENTS_DIR);
    this.segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  }

  /** Opens (creating if needed) the ledger in `opts.dir`, running recovery. */
  static async open(opts: FileLedgerOptions): Promise<FileLedger> {
    if (!opts.origin || /[\s+]/.test(opts.origin)) throw new LedgerError('config', `invalid ledger origin ${JSON.stringify(opts.origin)}: no spaces or '+'`);
    const ledger = new FileLedger(opts);
    await mkdir(ledger.segDir, { recursive: true, mode: 0o700 });
    await ledger.lock();
    try {
      await ledger.checkMeta();
      await ledger.readCheckpointLog();
      await ledger.recoverSegments();
      await ledger.checkStoredCheckpoint();
      if (ledger.size > (ledger.latest?.size ?? 0) || (!ledger.latest && ledger.size === 0)) {
        // Entries recovered after a crash (or a new ledger) get a checkpoint right away.
        await ledger.checkpoint();
      }
    } catch (err) {
      await ledger.release();
      throw err;
    }
    opts.log.info(
      { dir: opts.dir, origin: ledger.origin, size: ledger.size, segments: ledger.segments.length, checkpoint: ledger.latest?.size },
      'ledger open',
    );
    return ledger;
  }

  get size(): number {
    return this.tree.size;
  }

  private get log(): Logger {
    return this.opts.log;
  }

  // ---- opening and recovery -----------------------------------------------------------------

  private async lock(): Promise<void> {
    const file = path.join(this.opts.dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(file, 'wx', 0o600);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (Number.isSafeInteger(holder) && holder > 0 && pidAlive(holder)) {
        throw new LedgerError('locked', `the ledger in ${this.opts.dir} is open in process ${holder}${holder === process.pid ? ' (this one)' : ''}`);
      }
      this.log.warn({ file, pid: holder || undefined }, 'removing a stale ledger lock (its process is gone)');
      await unlink(file).catch(() => {});
    }
    throw new LedgerError('locked', `could not lock ${file}`);
  }

  private async release(): Promise<void> {
    await this.writeFh?.close().catch(() => {});
    await this.cpFh?.close().catch(() => {});
    this.writeFh = undefined;
    this.cpFh = undefined;
    await unlink(path.join(this.opts.dir, LOCK_FILE)).catch(() => {});
  }

  private async checkMeta(): Promise<void> {
    const file = path.join(this.opts.dir, META_FILE);
    let meta: { format?: string; version?: number; origin?: string } | undefined;
    try {
      meta = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new LedgerError('corrupt', `${file} is unreadable: ${(err as Error).message}`);
    }
    if (!meta) {
      const existing = (await readdir(this.segDir)).filter((n) => parseSegmentFileName(n) !== undefined);
      if (existing.length > 0) throw new LedgerError('corrupt', `${file} is missing but segments exist`);
      await writeFileAtomic(file, JSON.stringify({ format: 'videoteller-ledger', version: 1, origin: this.origin, createdAt: new Date().toISOString() }, null, 2) + '\n', 0o644);
      this.log.info({ dir: this.opts.dir, origin: this.origin }, 'created a new ledger');
      return;
    }
    if (meta.format !== 'videoteller-ledger' || meta.version !== 1) throw new LedgerError('corrupt', `${file} is not a version 1 videoteller ledger`);
    if (meta.origin !== this.origin) {
      throw new LedgerError('config', `the ledger in ${this.opts.dir} has origin ${JSON.stringify(meta.origin)}, but LEDGER_ORIGIN is ${JSON.stringify(this.origin)}: a log keeps its origin for life`);
    }
  }

  private async recoverSegments(): Promise<void> {
    const names = (await readdir(this.segDir))
      .map((n) => ({ n, first: parseSegmentFileName(n) }))
      .filter((x): x is { n: string; first: number } => x.first !== undefined)
      .sort((a, b) => a.first - b.first);
    for (let i = 0; i < names.length; i++) {
      const { n, first } = names[i]!;
      const file = path.join(this.segDir, n);
      const last = i === names.length - 1;
      const buf = await readFile(file);
      const header = decodeHeader(buf, SEGMENT_MAGIC);
      if ('problem' in header) {
        if (last && buf.length <= HEADER_BYTES) {
          // A crash while starting a new segment: it never held an entry.
          this.log.warn({ file, bytes: buf.length }, 'removing a segment file whose header was never completed');
          await unlink(file);
          await syncDir(this.segDir);
          continue;
        }
        throw new LedgerError('corrupt', `${file}: bad segment header (${header.problem})`);
      }
      if (header.firstIndex !== first) throw new LedgerError('corrupt', `${file}: header says first index ${header.firstIndex}`);
      if (first !== this.size) throw new LedgerError('corrupt', `${file}: starts at index ${first}, but ${this.size} entries precede it`);
      const scan = scanFrames(buf, HEADER_BYTES, MAX_ENTRY_BYTES, (frame) => {
        const index = this.size;
        let entry: { index?: unknown; sessionId?: unknown };
        try {
          entry = JSON.parse(fromUtf8(frame.payload));
        } catch {
          throw new LedgerError('corrupt', `${file} offset ${frame.offset}: entry ${index} is not JSON`);
        }
        if (entry.index !== index) throw new LedgerError('corrupt', `${file} offset ${frame.offset}: expected entry ${index}, found ${String(entry.index)}`);
        this.tree.append(hashLeaf(frame.payload, this.hash));
        this.offsets.push(frame.offset);
        if (typeof entry.sessionId === 'string') this.indexSession(entry.sessionId, index);
      });
      if (scan.problem) await this.dropTornTail(file, buf, scan.end, scan.problem, last);
      this.segments.push({ first, file, size: scan.end });
    }
    if (this.segments.length === 0) await this.startSegment(0);
    else this.writeFh = await open(this.segments[this.segments.length - 1]!.file, 'r+');
  }

  /**
   * A bad frame at `end`. It is a write a crash cut short (and held no acknowledged entry) only
   * if it is in the newest segment, within one group commit of the end, no whole entry follows
   * it, and the newest checkpoint does not cover it. Otherwise nothing is dropped: the open fails.
   */
  private async dropTornTail(file: string, buf: Buffer, end: number, problem: { kind: string; offset: number }, last: boolean): Promise<void> {
    const dropped = buf.length - end;
    const where = `${file} offset ${problem.offset}: ${problem.kind} frame at entry ${this.size}`;
    if (!last) throw new LedgerError('corrupt', `${where}, in a segment that later ones follow`);
    if (dropped > MAX_TORN_TAIL) throw new LedgerError('corrupt', `${where}, ${dropped} bytes before the end: more than one write could tear`);
    const next = findFrameAfter(buf, end, MAX_ENTRY_BYTES, ENTRY_MARKER);
    if (next !== undefined) throw new LedgerError('corrupt', `${where}, and a whole entry follows at offset ${next}: the data was damaged, not torn`);
    if (this.storedCheckpointSize > this.size) {
      throw new LedgerError('corrupt', `${where}, but the newest checkpoint covers ${this.storedCheckpointSize} entries: acknowledged entries are missing`);
    }
    const fh = await open(file, 'r+');
    try {
      await fh.truncate(end);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.log.warn(
      { file, offset: end, droppedBytes: dropped, reason: problem.kind, size: this.size },
      'dropped a torn tail left by an interrupted write (never acknowledged)',
    );
  }

  private async startSegment(first: number): Promise<void> {
    const file = path.join(this.segDir, segmentFileName(first));
    // Read-write, no O_APPEND: frames are written at explicit positions.
    const fh = await open(file, 'wx+', 0o644);
    try {
      await fh.write(encodeHeader(SEGMENT_MAGIC, first), 0, HEADER_BYTES, 0);
      await fh.datasync();
      await syncDir(this.segDir);
    } catch (err) {
      await fh.close();
      throw err;
    }
    await this.writeFh?.close();
    this.writeFh = fh;
    this.segments.push({ first, file, size: HEADER_BYTES });
  }

  /** Reads the checkpoint log (before the segments): the newest checkpoint, not yet checked. */
  private async readCheckpointLog(): Promise<void> {
    const file = path.join(this.opts.dir, CHECKPOINTS_FILE);
    let buf: Buffer;
    try {
      buf = await readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      buf = Buffer.alloc(0);
    }
    if (buf.length < HEADER_BYTES) {
      if (buf.length > 0) this.log.warn({ file }, 'rewriting a checkpoint log whose header was never completed');
      const fh = await open(file, 'w', 0o644);
      await fh.write(encodeHeader(CHECKPOINT_MAGIC, 0), 0, HEADER_BYTES, 0);
      await fh.datasync();
      await fh.close();
      await syncDir(this.opts.dir);
      buf = encodeHeader(CHECKPOINT_MAGIC, 0);
    }
    if ('problem' in decodeHeader(buf, CHECKPOINT_MAGIC)) throw new LedgerError('corrupt', `${file}: bad header`);
    const scan = scanFrames(buf, HEADER_BYTES, MAX_CHECKPOINT_BYTES);
    if (scan.problem) {
      const dropped = buf.length - scan.end;
      if (dropped > MAX_CHECKPOINT_BYTES + FRAME_OVERHEAD || findFrameAfter(buf, scan.end, MAX_CHECKPOINT_BYTES, utf8(`${this.origin}\n`)) !== undefined) {
        throw new LedgerError('corrupt', `${file} offset ${scan.problem.offset}: ${scan.problem.kind} frame`);
      }
      const fh = await open(file, 'r+');
      await fh.truncate(scan.end);
      await fh.sync();
      await fh.close();
      this.log.warn({ file, offset: scan.end, droppedBytes: dropped, reason: scan.problem.kind }, 'dropped a torn checkpoint write');
    }
    this.cpFh = await open(file, 'r+');
    this.cpPos = scan.end;
    const lastFrame = scan.frames[scan.frames.length - 1];
    if (!lastFrame) return;
    this.storedCheckpointNote = fromUtf8(lastFrame.payload);
    try {
      this.storedCheckpointSize = parseCheckpoint(parseNote(this.storedCheckpointNote).text).size;
    } catch (err) {
      throw new LedgerError('corrupt', `the newest checkpoint in ${file} is malformed: ${(err as Error).message}`);
    }
  }

  /** Checks the newest stored checkpoint against the recovered entries and the key ring. */
  private async checkStoredCheckpoint(): Promise<void> {
    const note = this.storedCheckpointNote;
    if (note === undefined) return;
    try {
      const opened = await openNote(note, this.opts.keyRing.noteKeys(this.origin), nodeEd25519Verify);
      const cp = parseCheckpoint(opened.text);
      if (cp.origin !== this.origin) throw new LedgerError('corrupt', `the newest checkpoint has origin ${cp.origin}`);
      if (cp.size > this.size) {
        throw new LedgerError('corrupt', `the newest checkpoint covers ${cp.size} entries but only ${this.size} are in the segments: acknowledged entries are missing`);
      }
      const root = this.tree.root(cp.size);
      if (Buffer.compare(Buffer.from(root), Buffer.from(cp.rootHash)) !== 0) {
        throw new LedgerError('corrupt', `the newest checkpoint (size ${cp.size}) does not match the entries: they were changed`);
      }
      this.latest = { origin: cp.origin, size: cp.size, rootHash: cp.rootHash, note };
      // The interval counts from the open: the first entries after a restart share one checkpoint
      // like any others instead of each forcing one at once.
      this.lastCpAt = Date.now();
    } catch (err) {
      if (err instanceof NoteError) throw new LedgerError('corrupt', `the newest checkpoint is not signed by a key of the key ring: ${err.message}`);
      throw err;
    }
  }

  private indexSession(sessionId: string, index: number): void {
    const list = this.sessions.get(sessionId);
    if (list) list.push(index);
    else this.sessions.set(sessionId, [index]);
  }

  // ---- appending ----------------------------------------------------------------------------

  append(input: EntryInput): Promise<AppendResult> {
    if (this.failure) return Promise.reject(new LedgerError('failed', `the ledger stopped after a write error: ${this.failure.message}`));
    if (this.closed) return Promise.reject(new LedgerError('closed', 'the ledger is closed'));
    let prepared: PreparedEntry;
    try {
      prepared = prepareEntry(input, new Date());
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.queue.push({ prepared, resolve, reject });
      // A microtask later, so that appends issued together share the first write.
      this.flushing ??= Promise.resolve().then(() => this.flushLoop());
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        if (this.failure) {
          const err = new LedgerError('failed', `the ledger stopped after a write error: ${this.failure.message}`);
          for (const p of this.queue.splice(0)) p.reject(err);
          break;
        }
        const batch = this.queue.splice(0, this.maxBatch);
        const first = this.size;
        const bytes: Uint8Array[] = [];
        const frames: Buffer[] = [];
        let total = 0;
        let taken = 0;
        for (const p of batch) {
          if (total >= MAX_BATCH_BYTES) break;
          const b = encodePrepared(p.prepared, first + taken);
          bytes.push(b);
          const f = encodeFrame(b);
          frames.push(f);
          total += f.length;
          taken++;
        }
        if (taken < batch.length) this.queue.unshift(...batch.slice(taken));
        const entries = batch.slice(0, taken);
        try {
          let seg = this.segments[this.segments.length - 1]!;
          if (seg.size > HEADER_BYTES && seg.size + total > this.segmentBytes) {
            await this.startSegment(first);
            seg = this.segments[this.segments.length - 1]!;
          }
          const data = frames.length === 1 ? frames[0]! : Buffer.concat(frames, total);
          let written = 0;
          while (written < total) {
            const { bytesWritten } = await this.writeFh!.write(data, written, total - written, seg.size + written);
            written += bytesWritten;
          }
          await this.writeFh!.datasync();
          this.stats.commits++;
          this.stats.entries += taken;
          let offset = seg.size;
          for (let i = 0; i < taken; i++) {
            const leafHash = hashLeaf(bytes[i]!, this.hash);
            this.tree.append(leafHash);
            this.offsets.push(offset);
            offset += frames[i]!.length;
            const p = entries[i]!.prepared;
            this.indexSession(p.sessionId, first + i);
            entries[i]!.resolve({
              index: first + i,
              leafHash,
              entry: { index: first + i, time: p.time, sessionId: p.sessionId, type: p.type, actor: p.actor, payload: JSON.parse(p.payloadJson) },
            });
          }
          seg.size = offset;
        } catch (err) {
          this.fail(err as Error);
          const e = new LedgerError('failed', `ledger write failed: ${(err as Error).message}`, { cause: err });
          for (const p of entries) p.reject(e);
          continue;
        }
        this.scheduleCheckpoint();
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.log.error({ err, size: this.size }, 'ledger write failed: the ledger stops taking entries until restarted (recovery runs on open)');
  }

  // ---- checkpoints --------------------------------------------------------------------------

  private scheduleCheckpoint(): void {
    if (this.cpTimer || this.closed || this.failure) return;
    const delay = Math.max(0, this.lastCpAt + this.opts.checkpointIntervalMs - Date.now());
    this.cpTimer = setTimeout(() => {
      this.cpTimer = undefined;
      this.checkpoint().catch((err) => this.log.error({ err }, 'scheduled checkpoint failed'));
    }, delay);
    this.cpTimer.unref();
  }

  latestCheckpoint(): SignedCheckpoint | undefined {
    return this.latest;
  }

  checkpoint(): Promise<SignedCheckpoint> {
    const size = this.size;
    if (this.latest && this.latest.size >= size) return Promise.resolve(this.latest);
    if (this.cpPending && this.cpPending.atLeast >= size) return this.cpPending.promise;
    if (this.failure) return Promise.reject(new LedgerError('failed', `the ledger stopped after a write error: ${this.failure.message}`));
    const promise = this.cpChain.then(() => this.signCheckpoint());
    this.cpChain = promise.catch(() => {});
    const pending = { atLeast: size, promise };
    this.cpPending = pending;
    void promise.finally(() => {
      if (this.cpPending === pending) this.cpPending = undefined;
    }).catch(() => {});
    return promise;
  }

  private async signCheckpoint(): Promise<SignedCheckpoint> {
    const size = this.size;
    if (this.latest && this.latest.size >= size) return this.latest;
    if (this.failure) throw new LedgerError('failed', `the ledger stopped after a write error: ${this.failure.message}`);
    if (!this.cpFh) throw new LedgerError('closed', 'the ledger is closed');
    const rootHash = this.tree.root(size);
    const note = await signNote(formatCheckpoint({ origin: this.origin, size, rootHash, extensions: [] }), [this.opts.keyRing.noteSigner(this.origin)]);
    const frame = encodeFrame(utf8(note));
    try {
      let written = 0;
      while (written < frame.length) {
        const { bytesWritten } = await this.cpFh!.write(frame, written, frame.length - written, this.cpPos + written);
        written += bytesWritten;
      }
      await this.cpFh!.datasync();
    } catch (err) {
      this.fail(err as Error);
      throw new LedgerError('failed', `checkpoint write failed: ${(err as Error).message}`, { cause: err });
    }
    this.cpPos += frame.length;
    this.stats.checkpoints++;
    this.lastCpAt = Date.now();
    this.latest = { origin: this.origin, size, rootHash, note };
    this.log.debug({ size }, 'signed a checkpoint');
    return this.latest;
  }

  // ---- reading and proofs -------------------------------------------------------------------

  private checkRange(start: number, end: number): void {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > this.size) {
      throw new LedgerError('out_of_range', `entries [${start}, ${end}) are not within [0, ${this.size})`);
    }
  }

  private segmentOf(index: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (this.segments[mid]!.first <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  async getEntries(start: number, end: number): Promise<StoredEntry[]> {
    this.checkRange(start, end);
    const out: StoredEntry[] = [];
    let index = start;
    while (index < end) {
      const s = this.segmentOf(index);
      const seg = this.segments[s]!;
      const segEnd = s + 1 < this.segments.length ? this.segments[s + 1]!.first : this.size;
      const stop = Math.min(end, segEnd);
      const from = this.offsets.get(index);
      const to = stop < segEnd ? this.offsets.get(stop) : seg.size;
      const buf = Buffer.alloc(to - from);
      const fh = await open(seg.file, 'r');
      try {
        let read = 0;
        while (read < buf.length) {
          const { bytesRead } = await fh.read(buf, read, buf.length - read, from + read);
          if (bytesRead === 0) break;
          read += bytesRead;
        }
      } finally {
        await fh.close();
      }
      const scan = scanFrames(buf, 0, MAX_ENTRY_BYTES);
      if (scan.problem || scan.frames.length !== stop - index) {
        throw new LedgerError('corrupt', `${seg.file}: entries ${index}..${stop - 1} no longer read back intact`);
      }
      for (const f of scan.frames) {
        const bytes = new Uint8Array(f.payload);
        out.push({ index, entry: JSON.parse(fromUtf8(bytes)) as LedgerEntry, bytes, leafHash: this.tree.leafHash(index) });
        index++;
      }
    }
    return out;
  }

  async entriesOf(sessionId: string): Promise<LedgerEntry[]> {
    const indexes = (this.sessions.get(sessionId) ?? []).filter((i) => i < this.size);
    const out: LedgerEntry[] = [];
    for (let i = 0; i < indexes.length; ) {
      let j = i + 1;
      while (j < indexes.length && indexes[j] === indexes[j - 1]! + 1) j++;
      for (const e of await this.getEntries(indexes[i]!, indexes[j - 1]! + 1)) out.push(e.entry);
      i = j;
    }
    return out;
  }

  async rootHash(treeSize: number = this.size): Promise<Uint8Array> {
    this.checkRange(0, treeSize);
    return this.tree.root(treeSize);
  }

  async inclusionProof(index: number, treeSize: number): Promise<Uint8Array[]> {
    this.checkRange(0, treeSize);
    if (!Number.isSafeInteger(index) || index < 0 || index >= treeSize) {
      throw new LedgerError('out_of_range', `index ${index} is not below tree size ${treeSize}`);
    }
    return this.tree.inclusionProof(index, treeSize);
  }

  async consistencyProof(first: number, second: number): Promise<Uint8Array[]> {
    this.checkRange(first, second);
    return this.tree.consistencyProof(first, second);
  }

  // ---- closing ------------------------------------------------------------------------------

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      while (this.flushing) await this.flushing;
      if (this.cpTimer) clearTimeout(this.cpTimer);
      this.cpTimer = undefined;
      if (!this.failure && (!this.latest || this.latest.size < this.size)) {
        await this.checkpoint().catch((err) => this.log.error({ err }, 'final checkpoint failed'));
      }
      await this.cpChain;
      await this.release();
      this.log.info({ size: this.size, checkpoint: this.latest?.size }, 'ledger closed');
    })();
    return this.closing;
  }

  /** Approximate memory the tree and indexes hold, for diagnostics. */
  get memoryBytes(): number {
    return this.tree.memoryBytes + this.size * 8;
  }

  /** For tests and diagnostics: the segment files, oldest first. */
  segmentFiles(): string[] {
    return this.segments.map((s) => s.file);
  }
}

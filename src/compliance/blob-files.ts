/**
 * Blob files for the compliance replay: the evidence blobs (recording, photos) verified against
 * their SHA-256 before anything is served from them, and the per-participant views of a recording
 * (derived files, not evidence).
 *
 * Verification hashes the whole file once and remembers the result for that exact file
 * (device, inode, size, modification time): a changed or replaced file is hashed again, so a
 * damaged blob is reported (`corrupt`), never served as evidence.
 *
 * Participant views: Chromium's <video> plays only the first video and the first audio track of a
 * file, and a call recording holds the customer's and the teller's tracks in one WebM. A view is
 * the same file with only one participant's tracks, made by ffmpeg stream copy (`-map`, `-c copy`:
 * no decoding, no re-encoding; the packets and their timestamps are the original's, so both views
 * share the recording's timeline). Views live in DATA_DIR/derived/recordings, named after the
 * original's SHA-256, made once and kept. They are a convenience for playback and NOT evidence:
 * the bundle and the verification use the original only.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { BlobStore } from '../identity/blobs.ts';
import type { Logger } from '../logger.ts';

export type BlobState = { ok: true; path: string; size: number } | { ok: false; reason: 'not_found' | 'corrupt' };

interface Verified {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ok: boolean;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest('hex');
}

export class VerifiedBlobs {
  private readonly verified = new Map<string, Verified>();
  private readonly inflight = new Map<string, Promise<BlobState>>();

  constructor(private readonly blobs: BlobStore) {}

  /** Whether the blob exists and still hashes to its name (cached per file identity). */
  check(sha256: string): Promise<BlobState> {
    let p = this.inflight.get(sha256);
    if (!p) {
      p = this.doCheck(sha256).finally(() => this.inflight.delete(sha256));
      this.inflight.set(sha256, p);
    }
    return p;
  }

  private async doCheck(sha256: string): Promise<BlobState> {
    const file = this.blobs.pathFor(sha256);
    const st = await fs.stat(file).catch(() => null);
    if (!st?.isFile()) return { ok: false, reason: 'not_found' };
    const known = this.verified.get(sha256);
    if (known && known.dev === st.dev && known.ino === st.ino && known.size === st.size && known.mtimeMs === st.mtimeMs) {
      return known.ok ? { ok: true, path: file, size: st.size } : { ok: false, reason: 'corrupt' };
    }
    const ok = (await sha256File(file)) === sha256;
    if (this.verified.size > 10_000) this.verified.clear();
    this.verified.set(sha256, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ok });
    return ok ? { ok: true, path: file, size: st.size } : { ok: false, reason: 'corrupt' };
  }
}

export class RecordingViewError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RecordingViewError';
  }
}

export interface ViewTrack {
  participant: string;
  kind: string;
}

export class RecordingViews {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    /** DATA_DIR/derived/recordings */
    readonly dir: string,
    private readonly log: Logger,
    private readonly ffmpegPath = 'ffmpeg',
  ) {}

  /**
   * The view of `participant` of a verified original: its file path (made on first use). `tracks`
   * is the recording entry's track list, in the file's stream order.
   */
  view(original: string, sha256: string, participant: string, tracks: readonly ViewTrack[], container: 'webm' | 'matroska'): Promise<string> {
    const streams = tracks.flatMap((t, i) => (t.participant === participant ? [i] : []));
    if (streams.length === 0) throw new RecordingViewError(`the recording has no ${participant} tracks`);
    const file = path.join(this.dir, `${sha256}.${participant}.${container === 'webm' ? 'webm' : 'mkv'}`);
    let p = this.inflight.get(file);
    if (!p) {
      p = this.make(original, file, streams, container).finally(() => this.inflight.delete(file));
      this.inflight.set(file, p);
    }
    return p;
  }

  private async make(original: string, file: string, streams: number[], container: 'webm' | 'matroska'): Promise<string> {
    if ((await fs.stat(file).catch(() => null))?.isFile()) return file;
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = path.join(this.dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const args = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-i', original, ...streams.flatMap((i) => ['-map', `0:${i}`]), '-c', 'copy', '-f', container, tmp];
    const started = Date.now();
    try {
      await new Promise<void>((resolve, reject) => {
        execFile(this.ffmpegPath, args, { timeout: 120_000, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
          if (err) reject(new RecordingViewError(`ffmpeg could not make the view: ${String(stderr).trim().slice(0, 300) || err.message}`, { cause: err }));
          else resolve();
        });
      });
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    this.log.info({ file: path.basename(file), streams, ms: Date.now() - started }, 'recording view made (stream copy)');
    return file;
  }
}

/** A parsed `Range: bytes=…` header: one range, or none (absent, multi-range or unparseable). */
export type ByteRange = { start: number; end: number } | 'unsatisfiable' | undefined;

/**
 * RFC 9110 §14: a single byte range. A header this server does not understand (another unit,
 * several ranges, bad syntax) is ignored, as the RFC allows, and the whole file is sent; a range
 * that starts past the end is `unsatisfiable` (416).
 */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined; // invalid: ignored
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

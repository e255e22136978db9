/**
 * Content-addressed blob store for images (reference photos, document stills) and other binary
 * evidence: `${DATA_DIR}/blobs/aa/bb/<sha256>`, where aa and bb are the first two byte pairs of
 * the hex digest. The ledger refers to a blob by its SHA-256 only.
 *
 * - A put is atomic and durable before it resolves: written to a temporary file in the target
 *   folder (mode 0600), fsync'd, renamed into place, and the folder fsync'd.
 * - Identical content is stored once; putting it again is a no-op.
 * - `putFile` stores a file of any size (a call recording) without reading it into memory: it is
 *   hashed while it is copied, in chunks, into a temporary file in `blobs/` and renamed into place
 *   once the digest is known.
 * - Reads verify the digest, so a damaged file is reported, never served as evidence.
 * - Nothing here logs content.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fsyncDir, writeFileDurably } from '../durable-file.ts';

export const BLOB_ERROR_CODES = ['invalid_id', 'not_found', 'corrupt'] as const;
export type BlobErrorCode = (typeof BLOB_ERROR_CODES)[number];

export class BlobError extends Error {
  constructor(
    readonly code: BlobErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'BlobError';
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface PutResult {
  sha256: string;
  size: number;
  path: string;
  /** False when the same content was already stored. */
  created: boolean;
}

export class BlobStore {
  readonly root: string;

  /**
   * `dataDir` is the server's DATA_DIR; blobs live in its `blobs/` folder unless `root` (BLOB_DIR)
   * names another. Several nodes share one: a put is a rename of a complete, fsync'd file to its
   * content address, so two nodes writing the same blob, or one reading while another writes, is safe
   * on a shared file system (NFS and the like, which rename atomically within one folder).
   */
  constructor(dataDir: string, root?: string) {
    this.root = root ? path.resolve(root) : path.join(path.resolve(dataDir), 'blobs');
  }

  /** Where a blob lives; throws BlobError('invalid_id') for anything but 64 lower-case hex digits. */
  pathFor(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new BlobError('invalid_id', 'a blob id is 64 lower-case hex digits');
    return path.join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async put(bytes: Uint8Array): Promise<PutResult> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const file = this.pathFor(sha256);
    const existing = await fs.stat(file).catch(() => null);
    if (existing?.isFile() && existing.size === bytes.length) {
      return { sha256, size: bytes.length, path: file, created: false };
    }
    await this.ensureDirs(path.dirname(file));
    await writeFileDurably(file, bytes);
    return { sha256, size: bytes.length, path: file, created: true };
  }

  /**
   * Stores the content of the file at `source` (which is left as it is), streaming: chunks are
   * hashed and written to a temporary file (mode 0600) in `blobs/` as they are read, so memory
   * stays bounded whatever the size. The copy is fsync'd, renamed to its content address and the
   * target folder fsync'd before this resolves. If the same content is already stored, the copy is
   * discarded (`created: false`). On any error the temporary file is removed.
   */
  async putFile(source: string): Promise<PutResult> {
    await this.ensureDirs(this.root);
    const tmp = path.join(this.root, `.incoming.${randomBytes(8).toString('hex')}.tmp`);
    const hash = createHash('sha256');
    let size = 0;
    const h = await fs.open(tmp, 'wx', 0o600);
    try {
      for await (const chunk of createReadStream(source, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
        for (let off = 0; off < chunk.length; ) {
          const { bytesWritten } = await h.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
      }
      await h.sync();
    } catch (err) {
      await h.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await h.close();
    const sha256 = hash.digest('hex');
    const file = this.pathFor(sha256);
    try {
      const existing = await fs.stat(file).catch(() => null);
      if (existing?.isFile() && existing.size === size) {
        await fs.rm(tmp, { force: true });
        return { sha256, size, path: file, created: false };
      }
      await this.ensureDirs(path.dirname(file));
      await fs.rename(tmp, file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await fsyncDir(path.dirname(file));
    return { sha256, size, path: file, created: true };
  }

  async has(sha256: string): Promise<boolean> {
    const st = await fs.stat(this.pathFor(sha256)).catch(() => null);
    return Boolean(st?.isFile());
  }

  /** The blob's bytes, after checking they still hash to `sha256`. */
  async get(sha256: string): Promise<Buffer> {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(this.pathFor(sha256));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlobError('not_found', `no blob ${sha256}`);
      throw err;
    }
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) {
      throw new BlobError('corrupt', `blob ${sha256} does not match its digest`);
    }
    return bytes;
  }

  /** Creates blobs/aa/bb with mode 0700, fsyncing each parent whose entry list changed. */
  private async ensureDirs(dir: string): Promise<void> {
    const chain: string[] = [];
    for (let d = dir; d !== path.dirname(this.root); d = path.dirname(d)) {
      chain.unshift(d);
      if (d === this.root) break;
    }
    await fs.mkdir(path.dirname(this.root), { recursive: true, mode: 0o700 });
    for (const d of chain) {
      try {
        await fs.mkdir(d, { mode: 0o700 });
        await fsyncDir(path.dirname(d));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  }
}

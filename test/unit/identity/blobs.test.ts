import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobError, BlobStore } from '../../../src/identity/blobs.ts';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vt-blobs-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('BlobStore', () => {
  it('stores content under blobs/aa/bb/<sha256>, mode 0600, and reads it back', async () => {
    const store = new BlobStore(dir);
    const bytes = Buffer.from('not really a photo, but bytes all the same');
    const sha = createHash('sha256').update(bytes).digest('hex');
    const r = await store.put(bytes);
    expect(r).toEqual({ sha256: sha, size: bytes.length, path: path.join(dir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha), created: true });
    expect((await fs.stat(r.path)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(r.path))).mode & 0o777).toBe(0o700);
    expect(await store.get(sha)).toEqual(bytes);
    expect(await store.has(sha)).toBe(true);
    // no temporary files left behind
    expect(await fs.readdir(path.dirname(r.path))).toEqual([sha]);
  });

  it('stores identical content once', async () => {
    const store = new BlobStore(dir);
    const a = await store.put(Buffer.from('same'));
    const b = await store.put(new Uint8Array(Buffer.from('same')));
    expect(b).toEqual({ ...a, created: false });
    const both = await Promise.all([store.put(Buffer.from('race')), store.put(Buffer.from('race'))]);
    expect(both[0].sha256).toBe(both[1].sha256);
    expect(await fs.readdir(path.dirname(both[0].path))).toEqual([both[0].sha256]);
  });

  it('refuses ids that are not a SHA-256 (no path traversal)', async () => {
    const store = new BlobStore(dir);
    for (const bad of ['../../etc/passwd', 'ABCDEF'.padEnd(64, '0'), 'a'.repeat(63), '']) {
      await expect(store.get(bad)).rejects.toMatchObject({ name: 'BlobError', code: 'invalid_id' });
      expect(() => store.pathFor(bad)).toThrow(BlobError);
    }
  });

  it('reports a missing blob and a damaged one', async () => {
    const store = new BlobStore(dir);
    await expect(store.get('0'.repeat(64))).rejects.toMatchObject({ code: 'not_found' });
    const r = await store.put(Buffer.from('original'));
    await fs.writeFile(r.path, 'tampered');
    await expect(store.get(r.sha256)).rejects.toMatchObject({ code: 'corrupt' });
  });

  it('putFile stores a large file by streaming: same address as put, 0600, no temporary file left, the source untouched', async () => {
    const store = new BlobStore(dir);
    const source = path.join(dir, 'recording.webm');
    // 5 MiB plus an odd tail, so the copy spans several read chunks and ends mid-chunk.
    const bytes = randomBytes(5 * 1024 * 1024 + 12345);
    await fs.writeFile(source, bytes);
    const sha = createHash('sha256').update(bytes).digest('hex');
    const r = await store.putFile(source);
    expect(r).toEqual({ sha256: sha, size: bytes.length, path: store.pathFor(sha), created: true });
    expect((await fs.stat(r.path)).mode & 0o777).toBe(0o600);
    // Buffer.equals: toEqual walks 5 MiB element by element (tens of seconds).
    expect((await store.get(sha)).equals(bytes)).toBe(true);
    expect((await fs.readFile(source)).equals(bytes)).toBe(true);
    expect((await fs.readdir(path.join(dir, 'blobs'))).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    // Same content again (by file or by bytes): stored once.
    expect(await store.putFile(source)).toEqual({ ...r, created: false });
    expect(await store.put(bytes)).toEqual({ ...r, created: false });
    expect((await fs.readdir(path.join(dir, 'blobs'))).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    // An empty file is content too.
    const empty = path.join(dir, 'empty');
    await fs.writeFile(empty, '');
    expect((await store.putFile(empty)).sha256).toBe(createHash('sha256').digest('hex'));
  });

  it('putFile of a missing file fails and leaves nothing behind', async () => {
    const store = new BlobStore(dir);
    await expect(store.putFile(path.join(dir, 'nope.webm'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fs.readdir(path.join(dir, 'blobs'))).toEqual([]);
  });
});

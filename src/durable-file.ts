/**
 * Durable small-file writes, the one way the server writes a file it must not lose or half-write
 * (blobs, webhook deliveries): a temporary file (mode 0600) in the target folder, fsync, rename
 * into place, fsync the folder. After it resolves the file is whole and survives a crash; on any
 * error the temporary file is removed and the target is untouched.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export async function fsyncDir(dir: string): Promise<void> {
  const h = await fs.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export async function writeFileDurably(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const h = await fs.open(tmp, 'wx', 0o600);
  try {
    await h.writeFile(data);
    await h.sync();
  } catch (err) {
    await h.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await h.close();
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

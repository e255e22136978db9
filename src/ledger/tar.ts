/**
 * POSIX ustar (IEEE Std 1003.1-1988 / POSIX.1-2001 `ustar` format), just what the evidence bundle
 * needs: regular files, names of at most 100 bytes, sizes below 8 GiB. Portable (no Node API): the
 * server writes bundles with it, the CLI and the compliance page read them.
 *
 * Why tar and why our own: an auditor opens the bundle with `tar -xf` on any machine; the contents
 * (WebM, JPEG, small JSON) gain nothing from compression; a tar can be streamed as it is written
 * (no central directory, no seeking), so a long recording never has to sit in memory. A writer of
 * ustar headers is a page of code, and a reader that refuses everything but plain files (no links,
 * no absolute or `..` paths, no duplicate names) is safer for evidence than a general extractor.
 */
import { concatBytes } from './bytes.ts';

export const TAR_BLOCK = 512;
/** 11 octal digits: the largest size a plain ustar header can state. */
export const TAR_MAX_FILE_BYTES = 0o77777777777;
const NAME_MAX = 100;

export class TarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarError';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A file name the bundle may hold: relative, `/`-separated, no `.`/`..` parts, ASCII printable. */
export function isSafeTarName(name: string): boolean {
  if (name.length === 0 || name.length > NAME_MAX || !/^[\x21-\x7e]+$/.test(name)) return false;
  if (name.startsWith('/') || name.endsWith('/')) return false;
  return name.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

function writeOctal(buf: Uint8Array, offset: number, width: number, value: number): void {
  // width - 1 digits, then NUL.
  const digits = value.toString(8).padStart(width - 1, '0');
  if (digits.length > width - 1) throw new TarError(`value ${value} does not fit a ${width}-byte tar field`);
  buf.set(encoder.encode(digits), offset);
  buf[offset + width - 1] = 0;
}

/** The 512-byte ustar header of a regular file (mode 0644, owner 0/0). */
export function tarHeader(name: string, size: number, mtimeSeconds: number): Uint8Array {
  if (!isSafeTarName(name)) throw new TarError(`unsafe or too long tar name ${JSON.stringify(name)}`);
  if (!Number.isSafeInteger(size) || size < 0 || size > TAR_MAX_FILE_BYTES) throw new TarError(`file size ${size} does not fit a ustar header`);
  const h = new Uint8Array(TAR_BLOCK);
  h.set(encoder.encode(name), 0);
  writeOctal(h, 100, 8, 0o644);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, Math.max(0, Math.floor(mtimeSeconds)));
  h[156] = 0x30; // '0': regular file
  h.set(encoder.encode('ustar\u000000'), 257);
  // The checksum is computed with its own field as eight spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  const cks = sum.toString(8).padStart(6, '0');
  h.set(encoder.encode(cks), 148);
  h[154] = 0;
  h[155] = 0x20;
  return h;
}

/** Zero bytes that pad a file's data to a whole block. */
export function tarPadding(size: number): Uint8Array {
  const rest = size % TAR_BLOCK;
  return new Uint8Array(rest === 0 ? 0 : TAR_BLOCK - rest);
}

/** The end of an archive: two zero blocks. */
export function tarEnd(): Uint8Array {
  return new Uint8Array(2 * TAR_BLOCK);
}

/** A whole archive in memory (small archives and tests; the server streams instead). */
export function writeTar(files: readonly { name: string; data: Uint8Array; mtimeSeconds?: number }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of files) parts.push(tarHeader(f.name, f.data.length, f.mtimeSeconds ?? 0), f.data, tarPadding(f.data.length));
  parts.push(tarEnd());
  return concatBytes(...parts);
}

function readOctal(h: Uint8Array, offset: number, width: number, what: string): number {
  let text = '';
  for (let i = offset; i < offset + width; i++) {
    const c = h[i]!;
    if (c === 0 || c === 0x20) {
      if (text.length > 0) break;
      continue;
    }
    if (c < 0x30 || c > 0x37) throw new TarError(`${what} is not an octal number`);
    text += String.fromCharCode(c);
  }
  if (text.length === 0) throw new TarError(`${what} is empty`);
  const n = parseInt(text, 8);
  if (!Number.isSafeInteger(n)) throw new TarError(`${what} is too large`);
  return n;
}

function cString(h: Uint8Array, offset: number, width: number): Uint8Array {
  const end = h.indexOf(0, offset);
  return h.subarray(offset, end < 0 || end > offset + width ? offset + width : end);
}

export interface TarFile {
  name: string;
  /** A view into the archive's bytes (not a copy). */
  data: Uint8Array;
  /** Where the file's data starts in the archive. */
  offset: number;
}

/**
 * Reads an archive strictly: every header's checksum and ustar magic, regular files only, safe
 * and unique names, data within the archive, the two-zero-block end. Throws TarError.
 */
export function readTar(bytes: Uint8Array): TarFile[] {
  const files: TarFile[] = [];
  const names = new Set<string>();
  let pos = 0;
  for (;;) {
    if (pos + TAR_BLOCK > bytes.length) throw new TarError('the archive ends without its end-of-archive blocks');
    const h = bytes.subarray(pos, pos + TAR_BLOCK);
    if (h.every((b) => b === 0)) {
      const next = bytes.subarray(pos + TAR_BLOCK, pos + 2 * TAR_BLOCK);
      if (next.length < TAR_BLOCK || !next.every((b) => b === 0)) throw new TarError('the archive ends with a single zero block');
      return files;
    }
    let sum = 0;
    for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
    if (readOctal(h, 148, 8, 'header checksum') !== sum) throw new TarError(`bad header checksum at offset ${pos}`);
    if (decoder.decode(h.subarray(257, 262)) !== 'ustar') throw new TarError(`not a ustar header at offset ${pos}`);
    const type = h[156]!;
    let name: string;
    try {
      const prefix = decoder.decode(cString(h, 345, 155));
      const base = decoder.decode(cString(h, 0, NAME_MAX));
      name = prefix ? `${prefix}/${base}` : base;
    } catch {
      throw new TarError(`a file name at offset ${pos} is not UTF-8`);
    }
    if (type !== 0x30 && type !== 0) throw new TarError(`${JSON.stringify(name)} is not a regular file (type ${String.fromCharCode(type)}): a bundle holds plain files only`);
    if (!isSafeTarName(name)) throw new TarError(`unsafe file name ${JSON.stringify(name)}`);
    if (names.has(name)) throw new TarError(`${name} appears twice`);
    names.add(name);
    const size = readOctal(h, 124, 12, `size of ${name}`);
    const start = pos + TAR_BLOCK;
    if (start + size > bytes.length) throw new TarError(`${name} runs past the end of the archive`);
    files.push({ name, data: bytes.subarray(start, start + size), offset: start });
    pos = start + size + tarPadding(size).length;
  }
}

/**
 * On-disk framing of the file ledger (Node). A segment file is a header followed by frames:
 *
 *   header  "VTLSEG01" (8) | first index, u64 BE (8) | CRC-32 of the previous 16 bytes, u32 BE (4)
 *   frame   payload length, u32 BE (4) | CRC-32 of (length bytes || payload), u32 BE (4) | payload
 *
 * The checkpoint log uses the same header (magic "VTLCKP01", first index 0) and framing, one
 * signed note per frame. CRC-32 is zlib's (IEEE 802.3 polynomial).
 */
import { crc32 } from 'node:zlib';

export const HEADER_BYTES = 20;
export const FRAME_OVERHEAD = 8;
export const SEGMENT_MAGIC = 'VTLSEG01';
export const CHECKPOINT_MAGIC = 'VTLCKP01';

export function segmentFileName(firstIndex: number): string {
  return `${String(firstIndex).padStart(16, '0')}.seg`;
}

export function parseSegmentFileName(name: string): number | undefined {
  const m = /^(\d{16})\.seg$/.exec(name);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : undefined;
}

export function encodeHeader(magic: string, firstIndex: number): Buffer {
  const buf = Buffer.alloc(HEADER_BYTES);
  buf.write(magic, 0, 8, 'latin1');
  buf.writeBigUInt64BE(BigInt(firstIndex), 8);
  buf.writeUInt32BE(crc32(buf.subarray(0, 16)), 16);
  return buf;
}

export type HeaderProblem = 'short' | 'magic' | 'crc';

export function decodeHeader(buf: Uint8Array, magic: string): { firstIndex: number } | { problem: HeaderProblem } {
  if (buf.length < HEADER_BYTES) return { problem: 'short' };
  const b = Buffer.from(buf.buffer, buf.byteOffset, HEADER_BYTES);
  if (b.toString('latin1', 0, 8) !== magic) return { problem: 'magic' };
  if (crc32(b.subarray(0, 16)) !== b.readUInt32BE(16)) return { problem: 'crc' };
  const first = b.readBigUInt64BE(8);
  if (first > BigInt(Number.MAX_SAFE_INTEGER)) return { problem: 'magic' };
  return { firstIndex: Number(first) };
}

export function encodeFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_OVERHEAD + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.set(payload, FRAME_OVERHEAD);
  frame.writeUInt32BE(crc32(frame.subarray(FRAME_OVERHEAD), crc32(frame.subarray(0, 4))), 4);
  return frame;
}

/**
 * What stops a scan: `truncated` (the file ends inside a frame), `length` (a length of zero or
 * above the limit), `crc` (the checksum does not match).
 */
export type FrameProblem = 'truncated' | 'length' | 'crc';

export interface Frame {
  offset: number;
  payload: Uint8Array;
}

export interface FrameScan {
  frames: Frame[];
  /** Offset just past the last good frame. */
  end: number;
  problem?: { kind: FrameProblem; offset: number };
}

/** Reads consecutive frames from `offset` until the end of `buf` or the first bad frame. */
export function scanFrames(buf: Uint8Array, offset: number, maxPayload: number, onFrame?: (f: Frame) => void): FrameScan {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const frames: Frame[] = [];
  let pos = offset;
  while (pos < b.length) {
    if (b.length - pos < FRAME_OVERHEAD) return { frames, end: pos, problem: { kind: 'truncated', offset: pos } };
    const len = b.readUInt32BE(pos);
    if (len === 0 || len > maxPayload) return { frames, end: pos, problem: { kind: 'length', offset: pos } };
    if (b.length - pos - FRAME_OVERHEAD < len) return { frames, end: pos, problem: { kind: 'truncated', offset: pos } };
    const payload = b.subarray(pos + FRAME_OVERHEAD, pos + FRAME_OVERHEAD + len);
    if (crc32(payload, crc32(b.subarray(pos, pos + 4))) !== b.readUInt32BE(pos + 4)) {
      return { frames, end: pos, problem: { kind: 'crc', offset: pos } };
    }
    const frame = { offset: pos, payload };
    if (onFrame) onFrame(frame);
    else frames.push(frame);
    pos += FRAME_OVERHEAD + len;
  }
  return { frames, end: pos };
}

/**
 * The offset of the first valid frame after `from` whose payload starts with `marker`, if any.
 * Recovery uses it to tell a torn tail (nothing valid after the damage) from damage in the
 * middle of the data (whole frames follow it).
 */
export function findFrameAfter(buf: Uint8Array, from: number, maxPayload: number, marker: Uint8Array): number | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  let at = b.indexOf(marker, from + FRAME_OVERHEAD + 1);
  while (at >= 0) {
    const start = at - FRAME_OVERHEAD;
    const scan = scanFrames(b.subarray(start, Math.min(b.length, start + FRAME_OVERHEAD + maxPayload)), 0, maxPayload);
    if (scan.frames.length > 0) return start;
    at = b.indexOf(marker, at + 1);
  }
  return undefined;
}

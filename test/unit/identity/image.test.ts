import { deflateSync } from 'node:zlib';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PNG } from 'pngjs';
import {
  applyOrientation,
  decodeImage,
  DEFAULT_IMAGE_LIMITS,
  fitWithin,
  ImageError,
  probeImage,
  resizeRgb,
  sniffImageType,
  type RgbImage,
} from '../../../src/identity/image.ts';
import { encodeJpeg, samplePath } from '../../fixtures/faces/samples.ts';

// --- helpers -----------------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** A well-formed PNG whose header declares width × height and whose IDAT is a tiny zlib stream. */
function pngWithHeader(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function gradient(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      data[i] = (x * 255) / (w - 1);
      data[i + 1] = (y * 255) / (h - 1);
      data[i + 2] = 128;
    }
  return { data, width: w, height: h };
}

/** Insert an EXIF APP1 segment with the given orientation right after SOI. */
function withExifOrientation(jpg: Buffer, orientation: number): Buffer {
  const tiff = Buffer.alloc(8 + 2 + 12 + 4);
  tiff.write('II', 0, 'ascii');
  tiff.writeUInt16LE(42, 2);
  tiff.writeUInt32LE(8, 4);
  tiff.writeUInt16LE(1, 8); // one entry
  tiff.writeUInt16LE(0x0112, 10);
  tiff.writeUInt16LE(3, 12); // SHORT
  tiff.writeUInt32LE(1, 14);
  tiff.writeUInt16LE(orientation, 18);
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'binary'), tiff]);
  const seg = Buffer.alloc(4);
  seg.writeUInt16BE(0xffe1, 0);
  seg.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([jpg.subarray(0, 2), seg, body, jpg.subarray(2)]);
}

function expectImageError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).code).toBe(code);
    return;
  }
  throw new Error(`expected ImageError ${code}`);
}

const sample = fs.readFileSync(samplePath(1));

// --- tests -------------------------------------------------------------------------------------

describe('sniffing and header checks (no pixel decoding)', () => {
  it('recognises JPEG and PNG by their magic bytes only', () => {
    expect(sniffImageType(sample)).toBe('jpeg');
    expect(sniffImageType(pngWithHeader(64, 64))).toBe('png');
    expect(sniffImageType(Buffer.from('GIF89a....'))).toBeNull();
  });

  it('refuses zero bytes', () => {
    expectImageError(() => probeImage(Buffer.alloc(0)), 'empty');
  });

  it('refuses a GIF, saying what it is', () => {
    const gif = Buffer.concat([Buffer.from('GIF89a', 'ascii'), Buffer.from([1, 0, 1, 0, 0x80, 0, 0]), Buffer.alloc(32)]);
    expectImageError(() => probeImage(gif), 'unsupported_type');
    expect(() => probeImage(gif)).toThrow(/GIF/);
  });

  it('refuses a text file whatever its name (photo.jpg)', () => {
    const text = Buffer.from('This is not a photo, it is a text file renamed photo.jpg\n'.repeat(10));
    expectImageError(() => decodeImage(text), 'unsupported_type');
  });

  it('refuses a PNG bomb from its header: 100 000 × 100 000 declared, 1 KB of data', () => {
    const bomb = pngWithHeader(100_000, 100_000);
    expect(bomb.length).toBeLessThan(2000);
    expectImageError(() => probeImage(bomb), 'too_many_pixels');
    // decodeImage refuses it the same way, before inflating anything.
    expectImageError(() => decodeImage(bomb), 'too_many_pixels');
  });

  it('refuses a 50-megapixel PNG (10 000 × 5 000) and a 1 × 40 000 000 strip', () => {
    expectImageError(() => probeImage(pngWithHeader(10_000, 5_000)), 'too_many_pixels');
    expectImageError(() => probeImage(pngWithHeader(20_000, 10)), 'too_many_pixels');
  });

  it('refuses uploads over the byte limit before looking inside', () => {
    const big = Buffer.concat([sample, Buffer.alloc(DEFAULT_IMAGE_LIMITS.maxBytes)]);
    expectImageError(() => probeImage(big), 'too_large');
  });

  it('refuses images too small to hold a usable face', () => {
    expectImageError(() => probeImage(pngWithHeader(16, 16)), 'too_small');
  });

  it('reads JPEG dimensions from the frame header', () => {
    expect(probeImage(sample)).toEqual({ format: 'jpeg', width: 1920, height: 1280, orientation: 1 });
  });
});

describe('decoding damaged files', () => {
  it('refuses a truncated JPEG (cut at 90%, 50%, and inside the headers)', () => {
    for (const frac of [0.9, 0.5]) {
      expectImageError(() => decodeImage(sample.subarray(0, Math.floor(sample.length * frac))), 'corrupt');
    }
    expectImageError(() => decodeImage(sample.subarray(0, 300)), 'corrupt');
  });

  it('refuses a JPEG with only a start-of-image marker', () => {
    expectImageError(() => decodeImage(Buffer.from([0xff, 0xd8, 0xff, 0xd9])), 'corrupt');
  });

  it('refuses a PNG whose data is damaged (CRC) and one whose data does not fill the image', () => {
    const png = PNG.sync.write(Object.assign(new PNG({ width: 40, height: 40 }), { data: Buffer.alloc(40 * 40 * 4, 200) }));
    const damaged = Buffer.from(png);
    damaged[damaged.length - 20] = damaged[damaged.length - 20]! ^ 0xff;
    expectImageError(() => decodeImage(damaged), 'corrupt');
    expectImageError(() => decodeImage(pngWithHeader(64, 64)), 'corrupt');
  });
});

describe('decoding good files', () => {
  it('decodes the real sample photo into packed RGB', () => {
    const img = decodeImage(sample);
    expect(img).toMatchObject({ format: 'jpeg', width: 1920, height: 1280 });
    expect(img.data.length).toBe(1920 * 1280 * 3);
  });

  it('decodes PNG with transparency composited over white', () => {
    const png = new PNG({ width: 40, height: 40 });
    png.data.fill(0); // transparent black
    const img = decodeImage(PNG.sync.write(png));
    expect(img.format).toBe('png');
    expect([...img.data.subarray(0, 3)]).toEqual([255, 255, 255]);
  });

  it('applies EXIF orientation 6 (rotate 90° clockwise for display)', () => {
    const src = gradient(64, 40); // red grows to the right, green downwards
    const jpg = withExifOrientation(encodeJpeg(src, 95), 6);
    expect(probeImage(jpg).orientation).toBe(6);
    const img = decodeImage(jpg);
    expect([img.width, img.height]).toEqual([40, 64]);
    // After a clockwise turn the stored top-left corner is at the top-right.
    const px = (x: number, y: number) => [...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];
    expect(px(39, 0)[0]).toBeLessThan(30); // stored (0,0): red ≈ 0, green ≈ 0
    expect(px(39, 0)[1]).toBeLessThan(30);
    expect(px(0, 0)[1]).toBeGreaterThan(220); // stored (0, 39): green ≈ 255
  });

  it('orientation transforms are consistent (2 is its own inverse; 6 then 8 is identity)', () => {
    const src = gradient(9, 5);
    expect(applyOrientation(applyOrientation(src, 2), 2)).toEqual(src);
    expect(applyOrientation(applyOrientation(src, 6), 8)).toEqual(src);
    expect(applyOrientation(applyOrientation(src, 3), 3)).toEqual(src);
  });

  it('downscales by area averaging and maps back with the returned scale', () => {
    const img = decodeImage(sample);
    const { image, scale } = fitWithin(img, 960);
    expect([image.width, image.height]).toEqual([960, 640]);
    expect(scale).toBe(2);
    const flat = resizeRgb({ data: new Uint8Array(8 * 8 * 3).fill(77), width: 8, height: 8 }, 3, 3);
    expect(new Set(flat.data)).toEqual(new Set([77]));
  });
});

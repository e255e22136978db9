/**
 * Safe decoding of uploaded images (reference photos, document captures) into packed RGB.
 *
 * - The type is sniffed from the magic bytes, never taken from a file name or Content-Type.
 * - Byte size, then the dimensions read from the header (JPEG SOF, PNG IHDR), are checked
 *   BEFORE any pixel is decoded, so a decompression bomb (a small file declaring a huge
 *   raster) is refused without allocating the raster.
 * - Only JPEG (baseline and progressive, 8-bit, Huffman) and PNG are accepted; everything
 *   else is `unsupported_type`. Decoding is pure JavaScript (jpeg-js, pngjs): no native code.
 * - EXIF orientation (JPEG) is applied, so a phone photo taken upright is analysed upright.
 *
 * Decoding a large image takes hundreds of milliseconds of CPU: call decodeImage() inside the
 * engine's worker threads (FaceEngine.analyzeEncoded does), and only probeImage() on the event
 * loop (it reads headers only).
 */
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { inflateSync } from 'node:zlib';

export type ImageFormat = 'jpeg' | 'png';

export const IMAGE_ERROR_CODES = [
  'empty',
  'unsupported_type',
  'too_large',
  'too_many_pixels',
  'too_small',
  'corrupt',
] as const;
export type ImageErrorCode = (typeof IMAGE_ERROR_CODES)[number];

export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ImageError';
  }
}

export function isImageErrorCode(value: unknown): value is ImageErrorCode {
  return typeof value === 'string' && (IMAGE_ERROR_CODES as readonly string[]).includes(value);
}

export interface ImageLimits {
  /** Largest encoded size accepted, in bytes. */
  maxBytes: number;
  /** Largest raster accepted (width × height), checked from the header before decoding. */
  maxPixels: number;
  /** Longest side accepted, in pixels (refuses 1 × 40 000 000 strips). */
  maxSide: number;
  /** Shortest side accepted, in pixels (nothing useful fits in less). */
  minSide: number;
}

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxBytes: 8 * 1024 * 1024,
  maxPixels: 40_000_000,
  maxSide: 16_384,
  minSide: 32,
});

/** Packed 8-bit RGB, row-major, `data.length === width * height * 3`. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface ImageHeader {
  format: ImageFormat;
  /** Raster size as stored (before EXIF orientation). */
  width: number;
  height: number;
  /** EXIF orientation 1..8 (JPEG only; 1 = as stored). */
  orientation: number;
}

// ---------------------------------------------------------------------------------------------
// Sniffing

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWith(buf: Uint8Array, bytes: readonly number[], offset = 0): boolean {
  if (buf.length < offset + bytes.length) return false;
  return bytes.every((b, i) => buf[offset + i] === b);
}

/** JPEG or PNG from the magic bytes, or null. */
export function sniffImageType(buf: Uint8Array): ImageFormat | null {
  if (startsWith(buf, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(buf, PNG_SIGNATURE)) return 'png';
  return null;
}

/** A name for common formats we refuse, so the error says what was uploaded. */
function describeUnsupported(buf: Uint8Array): string {
  const ascii = (o: number, n: number) => String.fromCharCode(...buf.subarray(o, o + n));
  if (ascii(0, 4) === 'GIF8') return 'GIF';
  if (ascii(0, 4) === 'RIFF' && ascii(8, 4) === 'WEBP') return 'WebP';
  if (ascii(4, 4) === 'ftyp') return 'HEIF/AVIF/MP4';
  if (ascii(0, 2) === 'BM') return 'BMP';
  if (ascii(0, 4) === '%PDF') return 'PDF';
  if (startsWith(buf, [0x49, 0x49, 0x2a, 0x00]) || startsWith(buf, [0x4d, 0x4d, 0x00, 0x2a])) return 'TIFF';
  return 'unknown';
}

// ---------------------------------------------------------------------------------------------
// Header parsing (no pixel decoding)

function u16be(buf: Uint8Array, o: number): number {
  return ((buf[o] ?? 0) << 8) | (buf[o + 1] ?? 0);
}
function u32be(buf: Uint8Array, o: number): number {
  return (((buf[o] ?? 0) << 24) >>> 0) + ((buf[o + 1] ?? 0) << 16) + ((buf[o + 2] ?? 0) << 8) + (buf[o + 3] ?? 0);
}

/** SOF markers jpeg-js decodes: baseline (C0), extended (C1), progressive (C2), all Huffman. */
const SOF_SUPPORTED = new Set([0xc0, 0xc1, 0xc2]);
/** Other SOF markers: lossless, hierarchical, arithmetic coding. */
const SOF_UNSUPPORTED = new Set([0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

function readJpegHeader(buf: Uint8Array): ImageHeader {
  let o = 2; // after SOI
  let orientation = 1;
  while (o < buf.length) {
    if (buf[o] !== 0xff) throw new ImageError('corrupt', 'JPEG: expected a marker');
    while (buf[o] === 0xff) o++; // fill bytes
    const marker = buf[o++];
    if (marker === undefined) break;
    // Markers without a length.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    if (marker === 0xd9 || marker === 0xda) {
      throw new ImageError('corrupt', 'JPEG: no frame header before the image data');
    }
    if (o + 2 > buf.length) break;
    const len = u16be(buf, o);
    if (len < 2 || o + len > buf.length) throw new ImageError('corrupt', 'JPEG: segment runs past the end');
    const seg = o + 2;
    if (marker === 0xe1 && len >= 8 && startsWith(buf, [0x45, 0x78, 0x69, 0x66, 0, 0], seg)) {
      orientation = readExifOrientation(buf.subarray(seg + 6, o + len));
    } else if (SOF_SUPPORTED.has(marker) || SOF_UNSUPPORTED.has(marker)) {
      if (SOF_UNSUPPORTED.has(marker)) {
        throw new ImageError('unsupported_type', 'JPEG: lossless, hierarchical or arithmetic-coded JPEG is not supported');
      }
      if (len < 8) throw new ImageError('corrupt', 'JPEG: short frame header');
      const precision = buf[seg] ?? 0;
      const height = u16be(buf, seg + 1);
      const width = u16be(buf, seg + 3);
      const components = buf[seg + 5] ?? 0;
      if (precision !== 8) throw new ImageError('unsupported_type', `JPEG: ${precision}-bit samples are not supported`);
      if (![1, 3, 4].includes(components)) throw new ImageError('unsupported_type', `JPEG: ${components} colour components`);
      if (width === 0 || height === 0) throw new ImageError('corrupt', 'JPEG: zero or deferred (DNL) dimensions');
      return { format: 'jpeg', width, height, orientation };
    }
    o += len;
  }
  throw new ImageError('corrupt', 'JPEG: no frame header (truncated?)');
}

/** Orientation tag (0x0112) from a TIFF structure inside an EXIF APP1 segment; 1 when absent or odd. */
function readExifOrientation(tiff: Uint8Array): number {
  if (tiff.length < 8) return 1;
  const le = tiff[0] === 0x49 && tiff[1] === 0x49;
  const be = tiff[0] === 0x4d && tiff[1] === 0x4d;
  if (!le && !be) return 1;
  const r16 = (o: number) => (le ? (tiff[o] ?? 0) | ((tiff[o + 1] ?? 0) << 8) : u16be(tiff, o));
  const r32 = (o: number) =>
    le ? ((tiff[o] ?? 0) | ((tiff[o + 1] ?? 0) << 8) | ((tiff[o + 2] ?? 0) << 16)) + (tiff[o + 3] ?? 0) * 2 ** 24 : u32be(tiff, o);
  if (r16(2) !== 42) return 1;
  const ifd = r32(4);
  if (ifd + 2 > tiff.length) return 1;
  const count = r16(ifd);
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > tiff.length) return 1;
    if (r16(e) === 0x0112 && r16(e + 2) === 3) {
      const v = r16(e + 8);
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

const PNG_COLOR_DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16], // grey
  2: [8, 16], // RGB
  3: [1, 2, 4, 8], // palette
  4: [8, 16], // grey + alpha
  6: [8, 16], // RGBA
};

function readPngHeader(buf: Uint8Array): ImageHeader {
  // Signature (8), then the first chunk must be IHDR with 13 bytes of data.
  if (buf.length < 8 + 8 + 13 + 4) throw new ImageError('corrupt', 'PNG: truncated header');
  const len = u32be(buf, 8);
  const type = String.fromCharCode(...buf.subarray(12, 16));
  if (type !== 'IHDR' || len !== 13) throw new ImageError('corrupt', 'PNG: first chunk is not a valid IHDR');
  const width = u32be(buf, 16);
  const height = u32be(buf, 20);
  const depth = buf[24] ?? 0;
  const colorType = buf[25] ?? 0;
  if (width === 0 || height === 0) throw new ImageError('corrupt', 'PNG: zero dimensions');
  if (!PNG_COLOR_DEPTHS[colorType]?.includes(depth)) {
    throw new ImageError('corrupt', `PNG: invalid colour type ${colorType} with bit depth ${depth}`);
  }
  return { format: 'png', width, height, orientation: 1 };
}

/**
 * Checks everything that can be checked without decoding pixels: size, type, header, limits.
 * Cheap (reads a few hundred bytes); safe on the event loop.
 */
/** Packed RGB → baseline JPEG (the server's own stills, e.g. the ID document from the frame tap). */
export function encodeJpeg(img: RgbImage, quality = 90): Buffer {
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0, j = 0; i < img.data.length; i += 3, j += 4) {
    rgba[j] = img.data[i]!;
    rgba[j + 1] = img.data[i + 1]!;
    rgba[j + 2] = img.data[i + 2]!;
    rgba[j + 3] = 255;
  }
  return jpeg.encode({ data: rgba, width: img.width, height: img.height }, quality).data;
}

export function probeImage(buf: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): ImageHeader {
  if (buf.length === 0) throw new ImageError('empty', 'the upload is empty');
  if (buf.length > limits.maxBytes) {
    throw new ImageError('too_large', `the upload is ${buf.length} bytes; at most ${limits.maxBytes} are accepted`);
  }
  const format = sniffImageType(buf);
  if (format === null) {
    throw new ImageError('unsupported_type', `not a JPEG or PNG image (looks like: ${describeUnsupported(buf)})`);
  }
  const header = format === 'jpeg' ? readJpegHeader(buf) : readPngHeader(buf);
  const { width, height } = header;
  if (width > limits.maxSide || height > limits.maxSide || width * height > limits.maxPixels) {
    throw new ImageError(
      'too_many_pixels',
      `the image is ${width}×${height} (${((width * height) / 1e6).toFixed(1)} MP); at most ${(limits.maxPixels / 1e6).toFixed(0)} MP and ${limits.maxSide} px a side are accepted`,
    );
  }
  if (width < limits.minSide || height < limits.minSide) {
    throw new ImageError('too_small', `the image is ${width}×${height}; at least ${limits.minSide} px a side are needed`);
  }
  return header;
}

// ---------------------------------------------------------------------------------------------
// Decoding

export interface DecodedImage extends RgbImage {
  format: ImageFormat;
}

/** Probe, then decode into packed RGB with EXIF orientation applied. Throws ImageError only. */
export function decodeImage(buf: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): DecodedImage {
  const header = probeImage(buf, limits);
  let img: RgbImage;
  try {
    img = header.format === 'jpeg' ? decodeJpeg(buf, limits) : decodePng(buf, header);
  } catch (err) {
    if (err instanceof ImageError) throw err;
    // Decoders throw plain Errors for damaged data; their messages hold no image content.
    throw new ImageError('corrupt', `${header.format.toUpperCase()}: cannot decode (${shortMessage(err)})`);
  }
  if (img.width !== header.width || img.height !== header.height || img.data.length !== img.width * img.height * 3) {
    throw new ImageError('corrupt', `${header.format.toUpperCase()}: decoded size differs from the header`);
  }
  return { ...applyOrientation(img, header.orientation), format: header.format };
}

function shortMessage(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.length > 120 ? `${m.slice(0, 117)}...` : m;
}

function decodeJpeg(buf: Uint8Array, limits: ImageLimits): RgbImage {
  const out = jpeg.decode(buf, {
    useTArray: true,
    formatAsRGBA: false,
    // Refuse damaged streams instead of returning a half-grey picture.
    tolerantDecoding: false,
    maxResolutionInMP: Math.ceil(limits.maxPixels / 1e6),
    // Component planes + output for the largest accepted raster, with headroom.
    maxMemoryUsageInMB: Math.ceil((limits.maxPixels * 4 * 2) / (1024 * 1024)) + 64,
  });
  return { data: out.data, width: out.width, height: out.height };
}

const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Adam7 passes: [x start, y start, x step, y step]. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

/**
 * pngjs does not notice image data that ends before the image does: it then reads whatever its
 * output buffer held (found by a test that failed now and then). So the IDAT stream is inflated
 * here first, bounded by the exact size the header implies, and must have exactly that size.
 */
function checkPngDataLength(buf: Uint8Array): void {
  const width = u32be(buf, 16);
  const height = u32be(buf, 20);
  const depth = buf[24]!;
  const channels = PNG_CHANNELS[buf[25]!]!;
  const interlaced = buf[28] === 1;
  const rowBytes = (w: number) => (w === 0 ? 0 : 1 + Math.ceil((w * channels * depth) / 8));
  let expected = 0;
  if (!interlaced) expected = height * rowBytes(width);
  else {
    for (const [x0, y0, dx, dy] of ADAM7) {
      const w = Math.ceil(Math.max(0, width - x0) / dx);
      const h = Math.ceil(Math.max(0, height - y0) / dy);
      if (w > 0) expected += h * rowBytes(w);
    }
  }
  const parts: Uint8Array[] = [];
  for (let o = 8; o + 12 <= buf.length; ) {
    const len = u32be(buf, o);
    const type = String.fromCharCode(...buf.subarray(o + 4, o + 8));
    if (o + 12 + len > buf.length) throw new ImageError('corrupt', 'PNG: truncated chunk');
    if (type === 'IDAT') parts.push(buf.subarray(o + 8, o + 8 + len));
    if (type === 'IEND') break;
    o += 12 + len;
  }
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(parts), { maxOutputLength: expected + 1 });
  } catch {
    throw new ImageError('corrupt', 'PNG: the image data does not inflate');
  }
  if (raw.length !== expected) throw new ImageError('corrupt', `PNG: the image data holds ${raw.length} bytes, the image needs ${expected}`);
}

function decodePng(buf: Uint8Array, header: ImageHeader): RgbImage {
  checkPngDataLength(buf);
  // pngjs verifies CRCs and returns 8-bit RGBA whatever the colour type and depth.
  const png = PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  const { width, height } = png;
  if (width !== header.width || height !== header.height) throw new ImageError('corrupt', 'PNG: size mismatch');
  const src = png.data;
  const data = new Uint8Array(width * height * 3);
  // Composite any transparency over white (ID photos with a removed background).
  for (let i = 0, j = 0; j < data.length; i += 4, j += 3) {
    const a = src[i + 3] ?? 255;
    if (a === 255) {
      data[j] = src[i] ?? 0;
      data[j + 1] = src[i + 1] ?? 0;
      data[j + 2] = src[i + 2] ?? 0;
    } else {
      const w = 255 - a;
      data[j] = ((src[i] ?? 0) * a + 255 * w + 127) / 255;
      data[j + 1] = ((src[i + 1] ?? 0) * a + 255 * w + 127) / 255;
      data[j + 2] = ((src[i + 2] ?? 0) * a + 255 * w + 127) / 255;
    }
  }
  return { data, width, height };
}

/** Re-orients a stored raster per its EXIF orientation (1..8) so it displays upright. */
export function applyOrientation(img: RgbImage, orientation: number): RgbImage {
  if (orientation <= 1 || orientation > 8) return img;
  const { width: w, height: h, data: src } = img;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = new Uint8Array(src.length);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: sx = w - 1 - x; sy = y; break; // mirror horizontal
        case 3: sx = w - 1 - x; sy = h - 1 - y; break; // rotate 180
        case 4: sx = x; sy = h - 1 - y; break; // mirror vertical
        case 5: sx = y; sy = x; break; // transpose
        case 6: sx = y; sy = h - 1 - x; break; // stored rotated: display = rotate 90° clockwise
        case 7: sx = w - 1 - y; sy = h - 1 - x; break; // transverse
        default: sx = w - 1 - y; sy = x; break; // 8: display = rotate 90° counter-clockwise
      }
      const s = (sy * w + sx) * 3;
      const d = (y * ow + x) * 3;
      out[d] = src[s]!;
      out[d + 1] = src[s + 1]!;
      out[d + 2] = src[s + 2]!;
    }
  }
  return { data: out, width: ow, height: oh };
}

// ---------------------------------------------------------------------------------------------
// Raster helpers used by the engine and the quality checks

/** Validates a packed RGB frame's shape; throws ImageError('corrupt') when inconsistent. */
export function assertRgb(img: RgbImage, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): void {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ImageError('corrupt', `invalid frame size ${width}×${height}`);
  }
  if (width > limits.maxSide || height > limits.maxSide || width * height > limits.maxPixels) {
    throw new ImageError('too_many_pixels', `frame ${width}×${height} exceeds the pixel limit`);
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new ImageError('corrupt', `frame data has ${data?.length} bytes, expected ${width * height * 3} (packed RGB)`);
  }
}

/**
 * Resizes packed RGB. Downscaling averages every source pixel under each target pixel (no
 * aliasing, so a downscaled photo keeps the detail the detector needs); upscaling is bilinear.
 */
export function resizeRgb(img: RgbImage, width: number, height: number): RgbImage {
  const { width: sw, height: sh, data: src } = img;
  if (width === sw && height === sh) return { data: new Uint8Array(src), width, height };
  const out = new Uint8Array(width * height * 3);
  if (width <= sw && height <= sh) {
    const fx = sw / width;
    const fy = sh / height;
    for (let y = 0; y < height; y++) {
      const y0 = Math.floor(y * fy);
      const y1 = Math.max(y0 + 1, Math.min(sh, Math.floor((y + 1) * fy)));
      for (let x = 0; x < width; x++) {
        const x0 = Math.floor(x * fx);
        const x1 = Math.max(x0 + 1, Math.min(sw, Math.floor((x + 1) * fx)));
        let r = 0;
        let g = 0;
        let b = 0;
        for (let yy = y0; yy < y1; yy++) {
          let s = (yy * sw + x0) * 3;
          for (let xx = x0; xx < x1; xx++, s += 3) {
            r += src[s]!;
            g += src[s + 1]!;
            b += src[s + 2]!;
          }
        }
        const n = (y1 - y0) * (x1 - x0);
        const d = (y * width + x) * 3;
        out[d] = r / n + 0.5;
        out[d + 1] = g / n + 0.5;
        out[d + 2] = b / n + 0.5;
      }
    }
    return { data: out, width, height };
  }
  for (let y = 0; y < height; y++) {
    const fy = Math.max(0, Math.min(sh - 1, ((y + 0.5) * sh) / height - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(sh - 1, y0 + 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.max(0, Math.min(sw - 1, ((x + 0.5) * sw) / width - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(sw - 1, x0 + 1);
      const wx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const a = src[(y0 * sw + x0) * 3 + c]!;
        const b = src[(y0 * sw + x1) * 3 + c]!;
        const cc = src[(y1 * sw + x0) * 3 + c]!;
        const dd = src[(y1 * sw + x1) * 3 + c]!;
        out[(y * width + x) * 3 + c] = (a * (1 - wx) + b * wx) * (1 - wy) + (cc * (1 - wx) + dd * wx) * wy + 0.5;
      }
    }
  }
  return { data: out, width, height };
}

/** Downscales so the longest side is at most `maxSide`; `scale` maps result coordinates back (×scale). */
export function fitWithin(img: RgbImage, maxSide: number): { image: RgbImage; scale: number } {
  const longest = Math.max(img.width, img.height);
  if (longest <= maxSide) return { image: img, scale: 1 };
  const f = maxSide / longest;
  const w = Math.max(1, Math.round(img.width * f));
  const h = Math.max(1, Math.round(img.height * f));
  return { image: resizeRgb(img, w, h), scale: img.width / w };
}

/** Crops packed RGB to a rectangle clipped to the image (integer pixel coordinates). */
export function cropRgb(img: RgbImage, x: number, y: number, width: number, height: number): RgbImage {
  const x0 = Math.max(0, Math.floor(x));
  const y0 = Math.max(0, Math.floor(y));
  const x1 = Math.min(img.width, Math.ceil(x + width));
  const y1 = Math.min(img.height, Math.ceil(y + height));
  const w = Math.max(0, x1 - x0);
  const h = Math.max(0, y1 - y0);
  const out = new Uint8Array(w * h * 3);
  for (let yy = 0; yy < h; yy++) {
    const s = ((y0 + yy) * img.width + x0) * 3;
    out.set(img.data.subarray(s, s + w * 3), yy * w * 3);
  }
  return { data: out, width: w, height: h };
}

/** Rec. 601 luma, one byte per pixel. */
export function toLuma(img: RgbImage): Uint8Array {
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  const d = img.data;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    out[i] = (d[j]! * 299 + d[j + 1]! * 587 + d[j + 2]! * 114 + 500) / 1000;
  }
  return out;
}

/**
 * Face alignment for the recognition net (pure; used by the engine's workers).
 */
import type { RgbImage } from './image.ts';
import type { Point } from './types.ts';

/**
 * The face chip the recognition net sees, made upright. face-api cuts the square "dlib"
 * alignment box (from the centres of the eyes and the mouth) out of the image as it is, without
 * undoing in-plane head tilt, and descriptors degrade quickly with tilt (an 8° image rotation
 * doubled the median genuine distance, bench distances). Here the same square is taken in a
 * frame rotated by the eye-line angle, sampled bilinearly (edges replicated), so a tilted head
 * gives the chip an upright one would.
 */
export function uprightFaceChip(img: RgbImage, lm: readonly Point[]): RgbImage {
  const centre = (from: number, to: number) => {
    let x = 0;
    let y = 0;
    for (let i = from; i < to; i++) {
      x += lm[i]!.x;
      y += lm[i]!.y;
    }
    return { x: x / (to - from), y: y / (to - from) };
  };
  const le = centre(36, 42);
  const re = centre(42, 48);
  const mouth = centre(48, 68);
  const roll = Math.atan2(re.y - le.y, re.x - le.x);
  // face-api's alignDlib constants: the box is eyeToMouth / 0.45 wide, centred at x 0.5 and
  // y 0.43 of its size on the centre of the three points. Distances do not change with rotation.
  const eyeToMouth = (Math.hypot(mouth.x - le.x, mouth.y - le.y) + Math.hypot(mouth.x - re.x, mouth.y - re.y)) / 2;
  const size = Math.max(2, Math.floor(eyeToMouth / 0.45));
  const ref = { x: (le.x + re.x + mouth.x) / 3, y: (le.y + re.y + mouth.y) / 3 };
  const cos = Math.cos(roll);
  const sin = Math.sin(roll);
  const out = new Uint8Array(size * size * 3);
  const { width: W, height: H, data } = img;
  for (let v = 0; v < size; v++) {
    const uy = v + 0.5 - 0.43 * size;
    for (let u = 0; u < size; u++) {
      const ux = u + 0.5 - 0.5 * size;
      // upright offset from the reference point → image coordinates (rotate by +roll)
      const sx = Math.min(W - 1, Math.max(0, ref.x + ux * cos - uy * sin - 0.5));
      const sy = Math.min(H - 1, Math.max(0, ref.y + ux * sin + uy * cos - 0.5));
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const x1 = Math.min(W - 1, x0 + 1);
      const y1 = Math.min(H - 1, y0 + 1);
      const fx = sx - x0;
      const fy = sy - y0;
      const o = (v * size + u) * 3;
      for (let c = 0; c < 3; c++) {
        out[o + c] =
          (data[(y0 * W + x0) * 3 + c]! * (1 - fx) + data[(y0 * W + x1) * 3 + c]! * fx) * (1 - fy) +
          (data[(y1 * W + x0) * 3 + c]! * (1 - fx) + data[(y1 * W + x1) * 3 + c]! * fx) * fy +
          0.5;
      }
    }
  }
  return { data: out, width: size, height: size };
}

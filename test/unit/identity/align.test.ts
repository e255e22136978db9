/**
 * The upright face chip: a tilted head must give (nearly) the chip of the upright head.
 * Real face (s6f2 of the face-api demo photos) and its real landmarks from the fixture.
 */
import { describe, expect, it } from 'vitest';
import { uprightFaceChip } from '../../../src/identity/align.ts';
import { cropRgb, type RgbImage } from '../../../src/identity/image.ts';
import type { Point } from '../../../src/identity/types.ts';
import { faceSquare, fixtureFaces, loadSample, rotate } from '../../fixtures/faces/samples.ts';

const f = fixtureFaces().faces.find((x) => x.id === 's6f2')!;
const sq = faceSquare(loadSample(f.sample), f.box, 1.8);
// landmarks in the square crop's coordinates (faceSquare centres the box)
const ox = Math.round(f.box.x + f.box.width / 2 - sq.width / 2);
const oy = Math.round(f.box.y + f.box.height / 2 - sq.height / 2);
const lm: Point[] = f.landmarks68.map((p) => ({ x: p.x - ox, y: p.y - oy }));

/** Where a point goes when the image is rotated by `deg` (clockwise) about its centre, as samples.rotate does. */
function rotatePoints(points: Point[], img: RgbImage, deg: number): Point[] {
  const a = (deg * Math.PI) / 180;
  const cx = (img.width - 1) / 2;
  const cy = (img.height - 1) / 2;
  return points.map((p) => ({ x: cx + (p.x - cx) * Math.cos(a) - (p.y - cy) * Math.sin(a), y: cy + (p.x - cx) * Math.sin(a) + (p.y - cy) * Math.cos(a) }));
}

function meanAbsDiff(a: RgbImage, b: RgbImage): number {
  const w = Math.min(a.width, b.width);
  const h = Math.min(a.height, b.height);
  let s = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w * 3; x++) s += Math.abs(a.data[y * a.width * 3 + x]! - b.data[y * b.width * 3 + x]!);
  return s / (w * h * 3);
}

describe('uprightFaceChip', () => {
  it('is a square chip sized from the eye–mouth distance', () => {
    const chip = uprightFaceChip(sq, lm);
    expect(chip.width).toBe(chip.height);
    expect(chip.width).toBeGreaterThan(f.box.width * 0.6);
    expect(chip.width).toBeLessThan(f.box.width * 1.6);
  });

  it('undoes a 20° head tilt: the chips differ little, unlike plain crops of the same box', () => {
    const upright = uprightFaceChip(sq, lm);
    const tilted = rotate(sq, 20);
    const chip = uprightFaceChip(tilted, rotatePoints(lm, sq, 20));
    expect(Math.abs(chip.width - upright.width)).toBeLessThanOrEqual(1);
    const derolled = meanAbsDiff(upright, chip);
    // what face-api's own crop would compare: the same axis-aligned box cut from both images
    const box = { x: (sq.width - upright.width) / 2, y: (sq.height - upright.height) / 2 };
    const plain = meanAbsDiff(cropRgb(sq, box.x, box.y, upright.width, upright.height), cropRgb(tilted, box.x, box.y, upright.width, upright.height));
    console.log(`mean abs difference, upright vs 20°-tilted: de-rolled chips ${derolled.toFixed(1)}, plain crops ${plain.toFixed(1)} (levels)`);
    expect(derolled).toBeLessThan(8);
    expect(plain).toBeGreaterThan(3 * derolled);
  });
});

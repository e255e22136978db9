/**
 * Face engine bench: both detectors side by side, in one run, on this machine.
 *
 *   node --import tsx bench/face-match.ts [--frames=40] [--seconds=20] [--only=latency,throughput,distances] [--live=tiny,ssd]
 *
 * latency     one worker, frames submitted one after another: per-frame worker time and
 *             submit→result time at 640×480 (detection + 68 landmarks + 128-d descriptor), p50/p95.
 * throughput  the pool (one worker per core), 4 calls each submitting as fast as results come
 *             back: analysed frames/s, and per core.
 * decision    a simulated call: frames of one face at 2 frames/s, in real time, through
 *             submitFrame and CallMonitor; time from the first frame to the first 'match'
 *             decision (the rule needs 6 matching frames, so ≥ 2.5 s by construction).
 * distances   the measurement behind the default match threshold: reference descriptors from
 *             face crops analysed as uploads (SsdMobilenetv1), live descriptors from 640×480
 *             frames of the same crops transformed (each live detector); genuine = same face,
 *             impostor = different faces of the same photo (different people for sure) and of
 *             different photos (probably different people).
 *
 * Frames are built from the real face photos in @vladmandic/face-api's demo/ (see
 * test/fixtures/faces/samples.ts). Figures depend on what else runs on the machine: the load
 * average is printed with them.
 */
import os from 'node:os';
import { FaceEngine } from '../src/identity/engine.ts';
import type { Detector, FrameAnalysis } from '../src/identity/types.ts';
import { euclideanDistance } from '../src/identity/scoring.ts';
import { extractReference } from '../src/identity/reference-photo.ts';
import { CallMonitor } from '../src/identity/monitor.ts';
import type { RgbImage } from '../src/identity/image.ts';
import {
  brightness,
  composeFrame,
  encodeJpeg,
  faceSquare,
  fixtureFaces,
  jpegRoundTrip,
  loadSample,
  rotate,
  type FixtureFace,
} from '../test/fixtures/faces/samples.ts';
import { percentile } from './util.ts';

const args = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
const FRAMES = Number(args.get('frames') ?? 40);
const SECONDS = Number(args.get('seconds') ?? 20);
const ONLY = new Set((args.get('only') ?? 'latency,throughput,decision,distances').split(','));
const CORES = os.availableParallelism?.() ?? os.cpus().length;

interface Variant {
  detector: Detector;
  tinyInputSize?: number;
  label: string;
}
const VARIANTS: Variant[] = [
  { detector: 'tiny', tinyInputSize: 416, label: 'tiny@416' },
  { detector: 'tiny', tinyInputSize: 320, label: 'tiny@320' },
  { detector: 'ssd', label: 'ssd' },
];

const f1 = (v: number) => v.toFixed(1);
const f3 = (v: number) => v.toFixed(3);
function table(head: string[], rows: (string | number)[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) => r.map((c, i) => String(c).padStart(w[i]!)).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

const faces = fixtureFaces().faces;
/** One 640×480 frame per face (crop pasted on a plain background, mild sensor noise). */
function liveFrames(): RgbImage[] {
  return faces.map((f, i) => composeFrame(faceSquare(loadSample(f.sample), f.box), { seed: i + 1, noise: 3 }));
}

console.log(
  `face-match bench — ${new Date().toISOString()} — ${os.cpus()[0]?.model ?? 'cpu'} × ${CORES}, ` +
    `node ${process.version}, load average ${os.loadavg().map(f1).join(' ')}`,
);

// ---------------------------------------------------------------------------------------------
if (ONLY.has('latency')) {
  console.log(`\n## latency — 1 worker, 640×480, ${FRAMES} frames per detector (after 3 warm-up frames)\n`);
  const frames = liveFrames();
  const rows: (string | number)[][] = [];
  const medians = new Map<string, number>();
  for (const v of VARIANTS) {
    const engine = await FaceEngine.start({ workers: 1, detector: v.detector, tinyInputSize: v.tinyInputSize ?? 416 });
    try {
      for (let i = 0; i < 3; i++) await engine.submitFrame('warm', { ...frameAt(frames, i), ts: i });
      const worker: number[] = [];
      const e2e: number[] = [];
      let found = 0;
      for (let i = 0; i < FRAMES; i++) {
        const o = await engine.submitFrame('bench', { ...frameAt(frames, i), ts: i });
        if (o.status !== 'analyzed') throw new Error(`frame ${i}: ${o.status}`);
        worker.push(o.analysis.ms);
        e2e.push(o.latencyMs);
        if (o.analysis.faces.length === 1) found++;
      }
      medians.set(v.label, percentile(worker, 50));
      rows.push([v.label, f1(percentile(worker, 50)), f1(percentile(worker, 95)), f1(percentile(e2e, 50)), f1(percentile(e2e, 95)), f1(1000 / percentile(worker, 50)), `${found}/${FRAMES}`]);
    } finally {
      await engine.close();
    }
  }
  table(['detector', 'worker p50 ms', 'p95 ms', 'submit→result p50', 'p95', 'frames/s/core', 'exactly 1 face'], rows);
  const base = medians.get('tiny@416')!;
  console.log(`\nratios (p50 / tiny@416): ${[...medians].map(([k, m]) => `${k} ${(m / base).toFixed(2)}×`).join(', ')}`);
}

function frameAt(frames: RgbImage[], i: number) {
  const f = frames[i % frames.length]!;
  return { rgb: f.data, width: f.width, height: f.height };
}

// ---------------------------------------------------------------------------------------------
if (ONLY.has('throughput')) {
  console.log(`\n## throughput — pool of ${CORES} workers, 4 calls submitting back to back, ${SECONDS} s per detector\n`);
  const frames = liveFrames();
  const rows: (string | number)[][] = [];
  const rates = new Map<string, number>();
  for (const v of VARIANTS.filter((x) => x.label !== 'tiny@320')) {
    const engine = await FaceEngine.start({ workers: CORES, detector: v.detector, tinyInputSize: v.tinyInputSize ?? 416 });
    try {
      const end = performance.now() + SECONDS * 1000;
      const lat: number[] = [];
      const loop = async (call: number) => {
        let i = call;
        let n = 0;
        while (performance.now() < end) {
          const o = await engine.submitFrame(`call${call}`, { ...frameAt(frames, i++), ts: i });
          if (o.status === 'analyzed') {
            n++;
            lat.push(o.latencyMs);
          }
        }
        return n;
      };
      const t0 = performance.now();
      const counts = await Promise.all([0, 1, 2, 3].map(loop));
      const secs = (performance.now() - t0) / 1000;
      const total = counts.reduce((a, b) => a + b, 0);
      const rate = total / secs;
      rates.set(v.label, rate);
      rows.push([v.label, total, f1(rate), f1(rate / CORES), f1(percentile(lat, 50)), f1(percentile(lat, 95)), Math.floor(rate / 2)]);
    } finally {
      await engine.close();
    }
  }
  table(['detector', 'frames', 'frames/s', 'per core', 'latency p50 ms', 'p95', 'calls at 2 frames/s'], rows);
  const t = rates.get('tiny@416')!;
  console.log(`\nratio tiny@416 / ssd: ${(t / rates.get('ssd')!).toFixed(2)}×`);
}

// ---------------------------------------------------------------------------------------------
if (ONLY.has('decision')) {
  console.log(`\n## time to first decision — a call at 2 frames/s, pool of ${CORES} workers, tiny@416\n`);
  const engine = await FaceEngine.start({ workers: CORES });
  try {
    const rows: (string | number)[][] = [];
    for (const id of ['s6f2', 's1f0', 's3f0']) {
      const f = faces.find((x) => x.id === id)!;
      const crop = faceSquare(loadSample(f.sample), f.box);
      const ref = await extractReference(engine, encodeJpeg(crop, 92));
      const monitor = new CallMonitor({ reference: ref.descriptor });
      const t0 = performance.now();
      let decidedAt: number | null = null;
      let frames = 0;
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 16 && decidedAt === null; i++) {
        const due = t0 + i * 500;
        await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
        const fr = composeFrame(i % 2 ? rotate(crop, i % 4 === 1 ? 5 : -5) : crop, { seed: i + 1, noise: 3 });
        frames++;
        pending.push(
          engine.submitFrame(`call-${id}`, { rgb: fr.data, width: fr.width, height: fr.height, ts: Date.now() }).then((o) => {
            if (o.status !== 'analyzed') return;
            const r = monitor.onFrame(o.analysis, o.ts);
            if (decidedAt === null && r.decision.decision === 'match') decidedAt = performance.now();
          }),
        );
      }
      await Promise.all(pending);
      rows.push([id, frames, decidedAt === null ? 'none' : f1((decidedAt - t0) / 1000), engine.callStats(`call-${id}`)!.dropped]);
      engine.releaseCall(`call-${id}`);
    }
    table(['face', 'frames sent', 'first frame → match, s', 'dropped'], rows);
  } finally {
    await engine.close();
  }
}

// ---------------------------------------------------------------------------------------------
if (ONLY.has('distances')) {
  console.log('\n## distances — reference (upload, ssd) vs live 640×480 frames (per live detector)\n');
  const transforms: { name: string; make: (crop: RgbImage, seed: number) => RgbImage }[] = [
    { name: 'same crop', make: (c, s) => composeFrame(c, { seed: s, noise: 3 }) },
    { name: 'jpeg q30', make: (c, s) => jpegRoundTrip(composeFrame(c, { seed: s, noise: 3 }), 30) },
    { name: 'smaller (200 px)', make: (c, s) => composeFrame(c, { seed: s, noise: 3, side: 200 }) },
    { name: 'larger (420 px)', make: (c, s) => composeFrame(c, { seed: s, noise: 3, side: 420 }) },
    { name: 'rotated +8°', make: (c, s) => composeFrame(rotate(c, 8), { seed: s, noise: 3 }) },
    { name: 'rotated −8°', make: (c, s) => composeFrame(rotate(c, -8), { seed: s, noise: 3 }) },
    { name: 'brighter ×1.35', make: (c, s) => composeFrame(brightness(c, 1.35), { seed: s, noise: 3 }) },
    { name: 'darker ×0.6', make: (c, s) => composeFrame(brightness(c, 0.6), { seed: s, noise: 3 }) },
    {
      name: 'all: −5°, ×0.8, 240 px, q40',
      make: (c, s) => jpegRoundTrip(composeFrame(brightness(rotate(c, -5), 0.8), { seed: s, noise: 4, side: 240 }), 40),
    },
  ];
  const engine = await FaceEngine.start({ workers: CORES, maxQueuedJobs: 10_000 });
  try {
    const crops = faces.map((f) => faceSquare(loadSample(f.sample), f.box));
    // References: each crop uploaded as a JPEG (q92), analysed like a reference photo.
    const refs = await Promise.all(
      crops.map(async (c, i) => {
        const a = await engine.analyzeEncoded(encodeJpeg(c, 92), { detector: 'ssd' });
        return largestDescriptor(a, faces[i]!);
      }),
    );
    for (const det of (args.get('live') ?? 'tiny,ssd').split(',') as Detector[]) {
      const genuine = new Map<string, number[]>();
      let misses = 0;
      let worst = { d: -1, label: '' };
      const live: (Float32Array | null)[] = [];
      const jobs: Promise<void>[] = [];
      for (const [ti, t] of transforms.entries()) {
        genuine.set(t.name, []);
        for (const [i, c] of crops.entries()) {
          jobs.push(
            (async () => {
              const fr = t.make(c, i + 1);
              const a = await engine.analyze(fr.data, fr.width, fr.height, { detector: det });
              const d = largestDescriptor(a, faces[i]!);
              if (ti === 0) live[i] = d;
              if (!refs[i]) return;
              if (!d) {
                misses++;
                return;
              }
              const dist = euclideanDistance(refs[i]!, d);
              if (dist > worst.d) worst = { d: dist, label: `${faces[i]!.id} ${t.name}` };
              genuine.get(t.name)!.push(dist);
            })(),
          );
        }
      }
      await Promise.all(jobs);
      const withRef = refs.filter(Boolean).length;
      console.log(
        `live detector: ${det} — references found in ${withRef} of ${crops.length} face crops; ` +
          `live frames without a face: ${misses} of ${transforms.length * withRef}`,
      );
      const rows = [...genuine].map(([name, ds]) => [name, ds.length, f3(Math.min(...ds)), f3(percentile(ds, 50)), f3(percentile(ds, 95)), f3(Math.max(...ds))]);
      const allGenuine = [...genuine.values()].flat();
      rows.push(['GENUINE, all', allGenuine.length, f3(Math.min(...allGenuine)), f3(percentile(allGenuine, 50)), f3(percentile(allGenuine, 95)), f3(Math.max(...allGenuine))]);
      const same: number[] = [];
      const cross: number[] = [];
      let closest = { d: Infinity, a: '', b: '' };
      for (let i = 0; i < faces.length; i++) {
        for (let j = 0; j < faces.length; j++) {
          if (i === j || !refs[i] || !live[j]) continue;
          const d = euclideanDistance(refs[i]!, live[j]!);
          (faces[i]!.sample === faces[j]!.sample ? same : cross).push(d);
          if (d < closest.d) closest = { d, a: faces[i]!.id, b: faces[j]!.id };
        }
      }
      rows.push(['IMPOSTOR, same photo', same.length, f3(Math.min(...same)), f3(percentile(same, 50)), f3(percentile(same, 95)), f3(Math.max(...same))]);
      rows.push(['impostor, other photo', cross.length, f3(Math.min(...cross)), f3(percentile(cross, 50)), f3(percentile(cross, 95)), f3(Math.max(...cross))]);
      table(['pairs', 'n', 'min', 'median', 'p95', 'max'], rows);
      const p5 = (xs: number[]) => percentile(xs, 5);
      console.log(
        `closest impostor pair: ref ${closest.a} vs live ${closest.b} at ${f3(closest.d)}; ` +
          `impostor p5 same-photo ${f3(p5(same))}, other-photo ${f3(p5(cross))}; ` +
          `largest genuine: ${worst.label} at ${f3(worst.d)}; ` +
          `gap between the largest genuine and the smallest impostor: ${f3(Math.min(...same, ...cross) - Math.max(...allGenuine))}`,
      );
      for (const thr of [0.4, 0.45, 0.5, 0.55, 0.6]) {
        const fr = allGenuine.filter((d) => d > thr).length / allGenuine.length;
        const fa = [...same, ...cross].filter((d) => d <= thr).length / (same.length + cross.length);
        console.log(`  threshold ${thr.toFixed(2)}: genuine frames rejected ${(fr * 100).toFixed(1)}%, impostor frames accepted ${(fa * 100).toFixed(2)}%`);
      }
      console.log('');
    }
  } finally {
    await engine.close();
  }
}

function largestDescriptor(a: FrameAnalysis, face: FixtureFace): Float32Array | null {
  void face;
  if (a.faces.length === 0) return null;
  return a.faces.reduce((p, q) => (q.box.width * q.box.height > p.box.width * p.box.height ? q : p)).descriptor;
}

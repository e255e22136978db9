/**
 * Headless Chromium for the end-to-end tests (and the call-setup benchmark): Debian's
 * /usr/bin/chromium through playwright-core, a fake camera playing a real face from a .y4m,
 * and probes that read the pages' state.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { CallStats } from '../../client-web/lib/call.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.join(here, '../..');

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Builds client-web/dist (the server serves it when it starts). */
export async function buildPages(): Promise<void> {
  const { build } = await import('vite');
  await build({ configFile: path.join(repoRoot, 'client-web/vite.config.ts'), logLevel: 'warn' });
}

/** Makes the fake camera's .y4m (a real face, 640x480, 15 fps) into `dir`. */
export function makeFaceY4m(dir: string, seconds = 3): string {
  const file = path.join(dir, 'face.y4m');
  if (!existsSync(file)) execFileSync(path.join(here, 'fixtures/make-y4m.sh'), [file, String(seconds)], { stdio: 'inherit' });
  return file;
}

/**
 * Launches Chromium with the flags that work on these machines (MACHINE.md, "Browser tests").
 * playwright-core gives every launch a fresh temporary profile (its own --user-data-dir).
 */
export async function launchChromium(fakeVideo: string): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (apt-get install -y chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${fakeVideo}`,
      // Extra flags for experiments, e.g. E2E_CHROMIUM_ARGS='--force-fieldtrials=WebRTC-EnableDtlsPqc/Disabled/'.
      ...(process.env.E2E_CHROMIUM_ARGS?.split(/\s+/).filter(Boolean) ?? []),
    ],
  });
}

export function artifactsDir(): string {
  const dir = process.env.E2E_ARTIFACTS ?? path.join(os.tmpdir(), 'videoteller-e2e');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** The page's call statistics, from its `window.__videoteller` test hook. */
export function callStats(page: Page): Promise<CallStats | null> {
  return page.evaluate(() => (window as unknown as { __videoteller: { stats(): Promise<CallStats | null> } }).__videoteller.stats());
}

/** Waits until the page has decoded at least `min` frames of remote video; returns the count. */
export async function waitForDecodedFrames(page: Page, min: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last: CallStats | null = null;
  while (Date.now() < deadline) {
    last = await callStats(page);
    const decoded = last?.inbound.video?.framesDecoded ?? 0;
    if (decoded >= min) return decoded;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`no ${min} decoded frames within ${timeoutMs} ms; last stats: ${JSON.stringify(last)}`);
}

export interface PixelProbe {
  width: number;
  height: number;
  /** Mean luma, 0..255 (BT.601). */
  meanLuma: number;
  /** Standard deviation of luma: near 0 for a uniform (black, green, frozen-blank) picture. */
  stdLuma: number;
}

/** Draws a <video> into a canvas and measures its luma: is the picture there, and not uniform? */
export function probeVideo(page: Page, selector: string): Promise<PixelProbe> {
  return page.evaluate((sel) => {
    const video = document.querySelector<HTMLVideoElement>(sel);
    if (!video) throw new Error(`no video ${sel}`);
    const width = video.videoWidth;
    const height = video.videoHeight;
    if (!width || !height) return { width, height, meanLuma: 0, stdLuma: 0 };
    const canvas = document.createElement('canvas');
    canvas.width = 160;
    canvas.height = Math.round((160 * height) / width);
    const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let sum = 0;
    let sumSq = 0;
    const n = data.length / 4;
    for (let i = 0; i < data.length; i += 4) {
      const y = 0.299 * data[i]! + 0.587 * data[i + 1]! + 0.114 * data[i + 2]!;
      sum += y;
      sumSq += y * y;
    }
    const mean = sum / n;
    return { width, height, meanLuma: mean, stdLuma: Math.sqrt(Math.max(0, sumSq / n - mean * mean)) };
  }, selector);
}

/**
 * Identity-check settings from the environment. Kept beside the engine so src/config.ts can
 * take them in one line (`configSchema.extend(identityConfigSchema.shape)`) when the call
 * integration lands; until then loadIdentityConfig() parses them on its own. Every default
 * works on one machine.
 */
import os from 'node:os';
import { z } from 'zod';
import { DEFAULT_ENGINE_OPTIONS, type EngineOptions } from './engine.ts';
import { DEFAULT_IMAGE_LIMITS } from './image.ts';
import { DEFAULT_MATCH_CONFIG, validateMatchConfig, type MatchConfig } from './scoring.ts';
import { DETECTORS } from './types.ts';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const num = (min: number, max: number) => z.coerce.number().min(min).max(max);

export const identityConfigSchema = z.object({
  /** Face-engine worker threads (each ~400–600 MB RSS). */
  IDENTITY_WORKERS: int(1, 64).default(Math.max(1, os.availableParallelism?.() ?? os.cpus().length)),
  /** Detector for live frames: tiny (default, 2.3–2.9× faster) or ssd. Uploads always use ssd. */
  IDENTITY_DETECTOR: z.enum(DETECTORS).default(DEFAULT_ENGINE_OPTIONS.detector),
  IDENTITY_TINY_INPUT_SIZE: int(128, 608).refine((v) => v % 32 === 0, 'a multiple of 32').default(DEFAULT_ENGINE_OPTIONS.tinyInputSize),
  /** Descriptor distance at or under which a frame matches the reference. */
  IDENTITY_MATCH_THRESHOLD: num(0.1, 1.2).default(DEFAULT_MATCH_CONFIG.threshold),
  /** The rolling decision: at least MIN_FRAMES of the last WINDOW frames. */
  IDENTITY_MATCH_WINDOW: int(1, 200).default(DEFAULT_MATCH_CONFIG.windowFrames),
  IDENTITY_MATCH_MIN_FRAMES: int(1, 200).default(DEFAULT_MATCH_CONFIG.minFrames),
  IDENTITY_MAX_UPLOAD_BYTES: int(1024, 64 * 1024 * 1024).default(DEFAULT_IMAGE_LIMITS.maxBytes),
  IDENTITY_MAX_UPLOAD_PIXELS: int(1024, 100_000_000).default(DEFAULT_IMAGE_LIMITS.maxPixels),
});

export type IdentityConfig = z.infer<typeof identityConfigSchema>;

export function loadIdentityConfig(env: NodeJS.ProcessEnv = process.env): IdentityConfig {
  const known = Object.fromEntries(
    Object.keys(identityConfigSchema.shape)
      .filter((k) => env[k] !== undefined && env[k] !== '')
      .map((k) => [k, env[k]]),
  );
  const c = identityConfigSchema.parse(known);
  validateMatchConfig(toMatchConfig(c));
  return c;
}

export function toEngineOptions(c: IdentityConfig): Partial<EngineOptions> {
  return {
    workers: c.IDENTITY_WORKERS,
    detector: c.IDENTITY_DETECTOR,
    tinyInputSize: c.IDENTITY_TINY_INPUT_SIZE,
    imageLimits: { ...DEFAULT_IMAGE_LIMITS, maxBytes: c.IDENTITY_MAX_UPLOAD_BYTES, maxPixels: c.IDENTITY_MAX_UPLOAD_PIXELS },
  };
}

export function toMatchConfig(c: IdentityConfig): MatchConfig {
  return {
    ...DEFAULT_MATCH_CONFIG,
    threshold: c.IDENTITY_MATCH_THRESHOLD,
    windowFrames: c.IDENTITY_MATCH_WINDOW,
    minFrames: c.IDENTITY_MATCH_MIN_FRAMES,
  };
}

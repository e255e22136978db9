/**
 * The identity checks as the server composes them: one FaceEngine per process, started on first
 * use (its worker threads load ~13 MB of models and hold ~400-600 MB each, which a node that never
 * sees a reference photo or a call should not pay for), the blob store for photos, and the
 * settings every call uses. Closed in graceful shutdown.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { BlobStore } from './blobs.ts';
import { FaceEngine } from './engine.ts';
import { toEngineOptions, toMatchConfig } from './config.ts';
import type { MatchConfig } from './scoring.ts';

export interface IdentitySettings {
  match: MatchConfig;
  frameRate: number;
  challengeFrameRate: number;
  challenges: number;
  challengeTimeoutMs: number;
}

export class IdentityService {
  readonly blobs: BlobStore;
  readonly settings: IdentitySettings;
  private starting: Promise<FaceEngine> | undefined;
  private closed = false;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    /** Observers (operations metrics): each live frame the engine analysed, compute and submit-to-result ms. */
    private readonly hooks: { onFrameAnalyzed?: (analysisMs: number, latencyMs: number) => void } = {},
  ) {
    this.blobs = new BlobStore(config.DATA_DIR, config.BLOB_DIR);
    this.settings = {
      match: toMatchConfig(config),
      frameRate: config.IDENTITY_FRAME_RATE,
      challengeFrameRate: config.IDENTITY_CHALLENGE_FRAME_RATE,
      challenges: config.LIVENESS_CHALLENGES,
      challengeTimeoutMs: config.LIVENESS_CHALLENGE_TIMEOUT_MS,
    };
  }

  /** The engine, started on the first call; a failed start is retried on the next call. */
  engine(): Promise<FaceEngine> {
    if (this.closed) return Promise.reject(new Error('the identity service is closed'));
    this.starting ??= FaceEngine.start({ ...toEngineOptions(this.config), logger: this.log, ...(this.hooks.onFrameAnalyzed ? { onFrameAnalyzed: this.hooks.onFrameAnalyzed } : {}) }).catch((err) => {
      this.starting = undefined;
      throw err;
    });
    return this.starting;
  }

  /** Whether the engine has been started (tests, metrics). */
  get started(): boolean {
    return this.starting !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    const starting = this.starting;
    this.starting = undefined;
    if (starting) await (await starting.catch(() => undefined))?.close();
  }
}


/**
 * Every call is recorded (the customer consented on joining the queue: `customer.consent`).
 * This glues the call's CallRecorder (media/recorder.ts) to the evidence: when the call ends the
 * recording is finished, stored in the blob folder by its SHA-256, and a `recording.stored` entry
 * names it (hash, size, duration, time range, tracks). That entry is what the verification record
 * and the compliance replay rely on. A recording that could not be made is evidence as well
 * (`recording.failed`), so an auditor sees the gap instead of guessing.
 */
import path from 'node:path';
import type { CallMedia } from '../media/call-media.ts';
import { CallRecorder, RecorderError, type RecordingResult } from '../media/recorder.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { BlobStore } from '../src/identity/blobs.ts';
import type { Logger } from '../src/logger.ts';

export const RECORDING_EVIDENCE = { stored: 'recording.stored', failed: 'recording.failed' } as const;

export interface CallRecordingDeps {
  blobs: BlobStore;
  /** Parent of the per-call work folders (segments before the final remux), under DATA_DIR. */
  workDir: string;
  /** Tests: a non-default ffmpeg. */
  ffmpegPath?: string;
}

/** What the verification record says about the recording. */
export interface RecordingSummary {
  sha256: string;
  bytes: number;
  durationMs: number;
  startedAt: number;
  endedAt: number;
}

export class CallRecording {
  private finishing: Promise<RecordingSummary | undefined> | undefined;

  private constructor(
    private readonly sessionId: string,
    private readonly started: Promise<CallRecorder | undefined>,
    private readonly evidence: EvidenceSink,
    private readonly log: Logger,
  ) {}

  /** Starts recording the call's current and later producers; never throws (a failure is evidence). */
  static start(media: CallMedia, deps: CallRecordingDeps, evidence: EvidenceSink, log: Logger): CallRecording {
    const started = CallRecorder.start({
      media,
      dir: path.join(deps.workDir, media.callId),
      blobs: deps.blobs,
      logger: log,
      ...(deps.ffmpegPath ? { ffmpegPath: deps.ffmpegPath } : {}),
    }).catch(async (err: unknown) => {
      await recordFailure(evidence, media.sessionId, err, log);
      return undefined;
    });
    return new CallRecording(media.sessionId, started, evidence, log);
  }

  /**
   * Stops the recorder, stores the file and writes its evidence. Idempotent. Resolves with the
   * summary for the record, or undefined when there is no recording (the failure is evidence).
   */
  finish(): Promise<RecordingSummary | undefined> {
    this.finishing ??= (async () => {
      const recorder = await this.started;
      if (!recorder) return undefined;
      let result: RecordingResult;
      try {
        result = await recorder.stop();
      } catch (err) {
        await recordFailure(this.evidence, this.sessionId, err, this.log);
        return undefined;
      }
      await this.evidence.append({ sessionId: this.sessionId, type: RECORDING_EVIDENCE.stored, actor: 'system', payload: recordingPayload(result) });
      this.log.info({ sha256: result.sha256, bytes: result.bytes, durationMs: result.durationMs, restarts: result.restarts }, 'recording stored');
      return summarizeRecording(result);
    })();
    return this.finishing;
  }
}

export function summarizeRecording(r: Pick<RecordingResult, 'sha256' | 'bytes' | 'durationMs' | 'startedAt' | 'endedAt'>): RecordingSummary {
  return { sha256: r.sha256, bytes: r.bytes, durationMs: Math.round(r.durationMs), startedAt: r.startedAt, endedAt: r.endedAt };
}

/** The `recording.stored` payload: everything a replay needs to place the evidence on the recording's timeline. */
export function recordingPayload(r: RecordingResult): Record<string, unknown> {
  return {
    ...summarizeRecording(r),
    mimeType: r.mimeType,
    container: r.container,
    tracks: r.tracks.map((t) => ({ participant: t.participant, kind: t.kind, codec: t.codec, startMs: Math.round(t.startMs), segments: t.segments })),
    restarts: r.restarts,
  };
}

async function recordFailure(evidence: EvidenceSink, sessionId: string, err: unknown, log: Logger): Promise<void> {
  const code = err instanceof RecorderError ? err.code : 'internal';
  // `empty` is a call in which nobody sent media: not an error of the server.
  if (code === 'empty') log.info('nothing to record: no media was sent in the call');
  else log.error({ err }, 'the call could not be recorded');
  await evidence
    .append({ sessionId, type: RECORDING_EVIDENCE.failed, actor: 'system', payload: { code, message: err instanceof Error ? err.message.slice(0, 300) : String(err).slice(0, 300) } })
    .catch((e) => log.error({ err: e }, 'evidence append failed'));
}

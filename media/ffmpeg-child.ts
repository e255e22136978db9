import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { types as ms } from 'mediasoup';
import { udpPortsHeldBy } from './udp-ports.ts';

/**
 * The process plumbing shared by the frame tap and the recorder: one ffmpeg that reads an SDP on
 * stdin and receives RTP on a loopback port pair. What to do with it (when to stop it, how, what
 * a failure means) stays with each user; this holds only the mechanism: spawning with stderr
 * drained into its last lines, the exit promise, waiting for the ports, the signal sequence.
 */

/** ffmpeg's last stderr lines kept for error messages (the rest is read and discarded). */
const STDERR_LINES = 12;
const STDERR_LINE_CHARS = 300;
/** Where /proc is missing, assume ffmpeg has bound its ports after this long. */
const LISTEN_FALLBACK_MS = 500;

export interface FfmpegExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The failures of starting ffmpeg; both the frame tap's and the recorder's error codes. */
export type FfmpegStartErrorCode = 'ffmpeg_missing' | 'ffmpeg_failed';
export type FfmpegStartError = (code: FfmpegStartErrorCode, message: string, options?: { cause?: unknown }) => Error;

export interface FfmpegListenOptions {
  /** The SDP written to ffmpeg's stdin. */
  sdp: string;
  /** The ports ffmpeg must hold before it is sent anything (RTP and RTCP). */
  ports: readonly number[];
  timeoutMs: number;
  /** The owner gave up on this process meanwhile: stop waiting (the owner tears it down). */
  stopped: () => boolean;
  /** Builds the owner's error. */
  error: FfmpegStartError;
}

/**
 * An ffmpeg process with stdin and stderr piped (stdout piped or ignored). stderr is always
 * drained (a full pipe would block ffmpeg); only its last lines are kept.
 */
export class FfmpegChild<Out extends Readable | null = Readable | null> {
  readonly process: ChildProcessByStdio<Writable, Out, Readable>;
  readonly stderr: string[] = [];
  /** Resolves when the process is gone (or never started). */
  readonly exited: Promise<void>;
  spawnError: Error | undefined;
  /** Set when the process ended, before any 'close' listener of the owner runs. */
  exit: FfmpegExit | undefined;
  private killing: Promise<void> | undefined;

  /** Spawns `cmd args`; `onExit` runs when the process ends (after `exit` is set). */
  constructor(cmd: string, args: string[], stdout: Out extends null ? 'ignore' : 'pipe', onExit: (exit: FfmpegExit) => void) {
    const child = spawn(cmd, args, { stdio: ['pipe', stdout, 'pipe'], windowsHide: true }) as ChildProcessByStdio<Writable, Out, Readable>;
    this.process = child;
    child.stdin.on('error', () => undefined); // EPIPE if ffmpeg died before reading the SDP; its exit is reported
    this.exited = new Promise<void>((resolve) => {
      child.once('close', () => resolve());
      child.once('error', (err) => {
        this.spawnError ??= err;
        if (child.pid === undefined) resolve(); // never started: no 'close' to wait for
      });
    });
    drainStderr(child.stderr, this.stderr);
    child.once('close', (code, signal) => {
      this.exit = { code, signal };
      onExit(this.exit);
    });
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** ffmpeg's last stderr lines, for a log line or an error message. */
  tail(): string {
    return tail(this.stderr);
  }

  /**
   * Waits for the process to start, writes the SDP to its stdin, and waits until it holds its
   * ports. Resuming a consumer earlier would send the first packets (the key frame mediasoup
   * waits for) into a closed port, and the next key frame may be seconds away. Throws `error(...)`
   * if ffmpeg cannot be run, exits, or does not bind in time.
   */
  async listen(cmd: string, { sdp, ports, timeoutMs, stopped, error }: FfmpegListenOptions): Promise<void> {
    const child = this.process;
    await new Promise<void>((resolve) => {
      child.once('spawn', resolve);
      child.once('error', () => resolve());
    });
    if (this.spawnError) {
      const code = (this.spawnError as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES') throw error('ffmpeg_missing', `cannot run ${cmd}: ${code}`, { cause: this.spawnError });
      throw error('ffmpeg_failed', `cannot start ${cmd}: ${this.spawnError.message}`, { cause: this.spawnError });
    }
    child.stdin.end(sdp);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null || this.spawnError) {
        await this.exited;
        throw error('ffmpeg_failed', `ffmpeg exited before listening (${exitText(child.exitCode, child.signalCode)}): ${this.tail()}`);
      }
      if (stopped()) return;
      const held = await udpPortsHeldBy(child.pid!, ports);
      if (held === true) return;
      if (held === undefined) {
        await delay(LISTEN_FALLBACK_MS);
        return;
      }
      if (Date.now() > deadline) {
        throw error('ffmpeg_failed', `ffmpeg did not bind 127.0.0.1:${ports.join('/')} within ${timeoutMs} ms: ${this.tail()}`);
      }
      await delay(20);
    }
  }

  /**
   * Stops the process: `signal`, the same signal again after min(250 ms, killTimeoutMs / 2) (ffmpeg
   * acts on its first signal between packets only; blocked on a socket that no longer receives
   * anything it waits forever, and a second one interrupts the blocking read), SIGKILL after
   * `killTimeoutMs` (`onSigkill` first, to log it). Resolves when the process is gone. Safe to call
   * again: later calls get the first sequence.
   */
  kill(signal: NodeJS.Signals, killTimeoutMs: number, onSigkill: () => void): Promise<void> {
    const child = this.process;
    if (child.pid === undefined) return this.exited;
    this.killing ??= (async () => {
      if (this.alive) {
        child.kill(signal);
        const again = setTimeout(() => this.alive && child.kill(signal), Math.min(250, killTimeoutMs / 2));
        const killTimer = setTimeout(() => {
          if (this.alive) {
            onSigkill();
            child.kill('SIGKILL');
          }
        }, killTimeoutMs);
        await this.exited;
        clearTimeout(again);
        clearTimeout(killTimer);
      } else {
        await this.exited;
      }
    })();
    return this.killing;
  }
}

/**
 * The loopback PlainTransport that sends a consumer's RTP to ffmpeg (connected once ffmpeg holds
 * its ports). rtcpMux false: ffmpeg's RTP input always binds RTCP on rtpPort + 1 (even with
 * a=rtcp-mux in the SDP; checked with 5.1), so mediasoup's sender reports go to the socket ffmpeg
 * reads RTCP on instead of being mixed into the RTP port. Costs one more loopback port.
 */
export function createFfmpegTransport(router: ms.Router, appData: ms.AppData): Promise<ms.PlainTransport> {
  return router.createPlainTransport({
    listenInfo: { protocol: 'udp', ip: '127.0.0.1' },
    rtcpMux: false,
    comedia: false,
    appData,
  });
}

/**
 * What a consumer feeding ffmpeg may receive: the router's codecs among `mimeTypes` without RTX,
 * feedback or header extensions, so mediasoup sends plain media packets that match the SDP (ffmpeg
 * would choke on RTX payload types it was not told about).
 */
export function ffmpegCapabilities(router: ms.Router, mimeTypes: readonly string[]): ms.RtpCapabilities {
  const wanted = mimeTypes.map((m) => m.toLowerCase());
  const codecs = (router.rtpCapabilities.codecs ?? [])
    .filter((c) => wanted.includes(c.mimeType.toLowerCase()))
    .map((c) => ({ ...c, rtcpFeedback: [] }));
  return { codecs, headerExtensions: [] };
}

/** Always drained (a full stderr pipe would block ffmpeg); only the last lines are kept. */
function drainStderr(stream: Readable, lines: string[]): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (text: string) => {
    const parts = (partial + text).split(/[\r\n]+/);
    partial = (parts.pop() ?? '').slice(-STDERR_LINE_CHARS);
    for (const line of parts) if (line.trim()) keepLast(lines, line.slice(0, STDERR_LINE_CHARS), STDERR_LINES);
  });
  stream.on('end', () => {
    if (partial.trim()) keepLast(lines, partial, STDERR_LINES);
  });
}

function keepLast(lines: string[], line: string, max: number): void {
  lines.push(line);
  if (lines.length > max) lines.splice(0, lines.length - max);
}

/** The last few of a process's stderr lines, on one line. */
function tail(lines: string[]): string {
  return lines.slice(-4).join(' | ') || '(no output)';
}

export function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The wait before the n-th consecutive restart (`failures` from 1; the last value repeats). */
export function backoffDelayMs(delays: readonly number[], failures: number): number {
  return delays[Math.min(failures - 1, delays.length - 1)]!;
}

/** A delay that can be cut short (a backoff that close/stop ends at once). */
export interface CancellableDelay {
  done: Promise<void>;
  cancel(): void;
}

export function cancellableDelay(ms: number): CancellableDelay {
  let resolve!: () => void;
  const done = new Promise<void>((r) => (resolve = r));
  const timer = setTimeout(resolve, ms);
  return {
    done,
    cancel: () => {
      clearTimeout(timer);
      resolve();
    },
  };
}

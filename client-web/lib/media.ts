/** Camera and microphone: acquisition with readable errors, and a microphone level meter. */

export class MediaAccessError extends Error {
  override readonly name = 'MediaAccessError';
  constructor(
    /** The DOMException name (NotAllowedError, NotFoundError, NotReadableError ...) or 'unsupported'. */
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const MESSAGES: Record<string, string> = {
  NotAllowedError:
    'Access to the camera or microphone was refused. Allow both for this page in your browser settings (the camera icon in the address bar), then try again.',
  SecurityError: 'This browser does not allow camera access on this page. Open the link in Chrome, Safari or Firefox.',
  NotFoundError: 'No camera or microphone was found on this device.',
  NotReadableError: 'The camera or microphone is in use by another app. Close other apps that use the camera, then try again.',
  OverconstrainedError: 'The camera does not support the required video format.',
  AbortError: 'The camera could not be started. Try again.',
  unsupported: 'This browser cannot make video calls. Open the link in a current version of Chrome, Safari or Firefox.',
};

/** Front camera at 640x480 (what the identity checks need) and the microphone with echo cancellation. */
export async function getLocalMedia(): Promise<MediaStream> {
  if (!navigator.mediaDevices?.getUserMedia) throw new MediaAccessError('unsupported', MESSAGES.unsupported!);
  try {
    return await navigator.mediaDevices.getUserMedia({
      video: { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (err) {
    const name = err instanceof Error ? err.name : 'AbortError';
    throw new MediaAccessError(name, MESSAGES[name] ?? `The camera could not be started (${name}).`);
  }
}

export function stopStream(stream: MediaStream | undefined): void {
  stream?.getTracks().forEach((t) => t.stop());
}

/** Shows the microphone level in `meter` (a <meter> or <progress>, 0..1). Returns the stop function. */
export function micLevel(stream: MediaStream, meter: HTMLMeterElement): () => void {
  const track = stream.getAudioTracks()[0];
  if (!track || typeof AudioContext === 'undefined') return () => {};
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let frame = 0;
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    meter.value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
    frame = requestAnimationFrame(tick);
  };
  tick();
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    cancelAnimationFrame(frame);
    source.disconnect();
    if (ctx.state !== 'closed') ctx.close().catch(() => {});
  };
}

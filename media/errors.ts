import type { ErrorCode } from '../signaling/protocol.ts';

/**
 * A refusal of the media layer, with the protocol's machine-readable code. Signaling's `handle()`
 * recognises any error carrying a known `code` and sends `{ code, message }` to the client, so the
 * message is written for the client: it says what was wrong, never internal state.
 */
export class MediaError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MediaError';
  }
}

/**
 * Turns whatever a mediasoup call threw into a MediaError:
 * - `TypeError` (mediasoup's validation of rtpParameters, dtlsParameters, rtpCapabilities, in
 *   Node or in the worker) and `UnsupportedError` (a codec or extension the router lacks) are the
 *   client's fault: `bad_request`, with mediasoup's message prefixed by `what`;
 * - `InvalidStateError` (the router, transport or worker channel closed meanwhile): `invalid_state`;
 * - a plain `Error` from the worker while it applied parameters the client sent (a duplicated
 *   SSRC, MID or RID; DTLS parameters it cannot use): `bad_request` when `clientInput` is set;
 * - anything else is ours: `internal`, with a generic message (the cause is kept for the log).
 */
export function toMediaError(err: unknown, what: string, opts: { clientInput?: boolean } = {}): MediaError {
  if (err instanceof MediaError) return err;
  const name = err instanceof Error ? err.name : '';
  const detail = err instanceof Error ? err.message : String(err);
  if (err instanceof TypeError || name === 'UnsupportedError') {
    return new MediaError('bad_request', `${what}: ${detail}`, { cause: err });
  }
  if (name === 'InvalidStateError') {
    return new MediaError('invalid_state', `${what}: the call's media is closing`, { cause: err });
  }
  if (opts.clientInput && err instanceof Error) {
    return new MediaError('bad_request', `${what}: ${detail}`, { cause: err });
  }
  return new MediaError('internal', `${what} failed`, { cause: err });
}

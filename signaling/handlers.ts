import type { Socket } from 'socket.io';
import type { Logger } from '../src/logger.ts';
import {
  clientMessages,
  ERROR_CODES,
  MAX_MESSAGE_BYTES,
  type Ack,
  type ClientAckData,
  type ClientMessage,
  type ClientMessageName,
  type ClientToServerEvents,
  type ErrorCode,
  type ServerToClientEvents,
} from './protocol.ts';

export type AppSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

/** A failure a handler reports to the client as a typed error. */
export class SignalingError extends Error {
  constructor(readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'SignalingError';
  }
}

/** Errors from the parts below signaling that carry their own ErrorCode (router, media). */
function codeOf(err: unknown): ErrorCode | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (ERROR_CODE_SET as Set<string>).has(code) ? (code as ErrorCode) : undefined;
}
const ERROR_CODE_SET = new Set<string>(ERROR_CODES);

/**
 * Registers the handler of one client message. Before the handler runs, the message is bounded
 * in size and parsed with its zod schema; whatever the handler throws becomes a typed error in
 * the acknowledgement (or a `protocol:error` event when the client sent no callback), so a bad
 * message can never crash the server or leave the client waiting.
 */
export function handle<E extends ClientMessageName>(
  socket: AppSocket,
  event: E,
  log: Logger,
  handler: (payload: ClientMessage<E>) => Promise<ClientAckData[E]>,
): void {
  const schema = clientMessages[event];
  handledEvents(socket).add(event);
  (socket as unknown as { on(e: string, fn: (...args: unknown[]) => void): void }).on(event, async (...args: unknown[]) => {
    const last = args[args.length - 1];
    const ack = typeof last === 'function' ? (last as (r: Ack<ClientAckData[E]>) => void) : undefined;
    const reply = (r: Ack<ClientAckData[E]>) => {
      if (ack) ack(r);
      else if (!r.ok) socket.emit('protocol:error', { ...r.error, event });
    };
    const payloadArgs = ack ? args.slice(0, -1) : args;
    if (payloadArgs.length !== 1) {
      return reply({ ok: false, error: { code: 'bad_request', message: `${event} takes exactly one payload object` } });
    }
    const size = jsonSize(payloadArgs[0]);
    if (size > MAX_MESSAGE_BYTES) {
      return reply({ ok: false, error: { code: 'too_large', message: `${event} is ${size} bytes; the limit is ${MAX_MESSAGE_BYTES}` } });
    }
    const parsed = schema.safeParse(payloadArgs[0]);
    if (!parsed.success) {
      const detail = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(payload)'}: ${i.message}`).join('; ');
      return reply({ ok: false, error: { code: 'bad_request', message: `${event}: ${detail}` } });
    }
    try {
      const data = await handler(parsed.data as ClientMessage<E>);
      reply({ ok: true, data });
    } catch (err) {
      const code = codeOf(err);
      if (code && code !== 'internal') {
        log.info({ event, code, msg: (err as Error).message }, 'request refused');
        reply({ ok: false, error: { code, message: (err as Error).message } });
      } else {
        log.error({ err, event }, 'handler failed');
        reply({ ok: false, error: { code: 'internal', message: 'internal error' } });
      }
    }
  });
}

const handledBySocket = new WeakMap<AppSocket, Set<string>>();
function handledEvents(socket: AppSocket): Set<string> {
  let set = handledBySocket.get(socket);
  if (!set) {
    set = new Set();
    handledBySocket.set(socket, set);
    // An event this socket has no handler for (another namespace's message, a typo, garbage)
    // gets a typed error instead of leaving the client waiting for an acknowledgement forever.
    const known = set;
    socket.onAny((event: unknown, ...args: unknown[]) => {
      if (typeof event === 'string' && known.has(event)) return;
      const last = args[args.length - 1];
      const error = { code: 'bad_request' as const, message: `unknown message ${JSON.stringify(String(event)).slice(0, 80)} on this namespace` };
      if (typeof last === 'function') (last as (r: Ack<never>) => void)({ ok: false, error });
      else socket.emit('protocol:error', { ...error, event: String(event).slice(0, 64) });
    });
  }
  return set;
}

/** Byte length of a payload as JSON; cyclic or unserialisable payloads count as too large. */
function jsonSize(value: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(value) ?? '');
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** The typed error a socket.io middleware passes to `next` so the client's connect_error carries it. */
export function connectError(code: ErrorCode, message: string): Error & { data: { code: ErrorCode; message: string } } {
  const err = new Error(message) as Error & { data: { code: ErrorCode; message: string } };
  err.data = { code, message };
  return err;
}

/**
 * A typed socket.io connection to one namespace, with the protocol of signaling/protocol.ts:
 * `request()` sends a client message and resolves with its acknowledgement's data (or throws a
 * RequestError carrying the typed error code); `listen()` checks every server message against its
 * zod schema before a handler sees it.
 */
import { io, type Socket } from 'socket.io-client';
import { z } from 'zod';
import {
  boardSnapshotSchema,
  callEndedSchema,
  callStartSchema,
  challengeViewSchema,
  cosignClosedSchema,
  decisionResultSchema,
  otpRequestedSchema,
  otpResultSchema,
  pendingDecisionSchema,
  guidanceCodeSchema,
  identityReportSchema,
  identityStatusSchema,
  livenessViewSchema,
  newProducerSchema,
  offerClosedSchema,
  offerSchema,
  protocolErrorSchema,
  queuePositionSchema,
  ratingResultSchema,
  sessionInfoSchema,
  tellerInfoSchema,
  type ClientAckData,
  type ClientMessage,
  type ClientMessageName,
  type ClientToServerEvents,
  type ErrorCode,
  type ServerToClientEvents,
} from '../../signaling/protocol.ts';

export type AppSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type ServerEventName = keyof ServerToClientEvents;
export type ServerMessage<E extends ServerEventName> = Parameters<ServerToClientEvents[E]>[0];

/** The schema of every server → client message, checked on arrival. */
export const serverMessages: { [E in ServerEventName]: z.ZodType<ServerMessage<E>> } = {
  'session:info': sessionInfoSchema,
  'queue:position': queuePositionSchema,
  'teller:info': tellerInfoSchema,
  'offer:new': offerSchema,
  'offer:closed': offerClosedSchema,
  'call:start': callStartSchema,
  'media:newProducer': newProducerSchema,
  'call:ended': callEndedSchema,
  'identity:report': identityReportSchema,
  'identity:status': identityStatusSchema,
  'identity:liveness': livenessViewSchema,
  'identity:guidance': z.object({ code: guidanceCodeSchema.nullable() }),
  'liveness:prompt': z.object({ challenge: challengeViewSchema.nullable() }),
  'otp:requested': otpRequestedSchema,
  'otp:status': otpResultSchema,
  'cosign:pending': pendingDecisionSchema,
  'cosign:closed': cosignClosedSchema,
  'decision:final': decisionResultSchema,
  'board:update': boardSnapshotSchema,
  'protocol:error': protocolErrorSchema.extend({ event: z.string().optional() }),
};

/** Acknowledgement data whose shape the protocol declares with a schema. */
const ackSchemas: { [E in ClientMessageName]?: z.ZodType<ClientAckData[E]> } = {
  'queue:join': queuePositionSchema,
  'liveness:start': livenessViewSchema,
  'call:decide': decisionResultSchema,
  'cosign:decide': decisionResultSchema,
  'otp:submit': otpResultSchema,
  'rating:submit': ratingResultSchema,
};

const ackEnvelopeSchema = z.union([
  z.object({ ok: z.literal(true), data: z.unknown() }),
  z.object({ ok: z.literal(false), error: protocolErrorSchema }),
]);

/** Error codes of the protocol, plus what can go wrong on the client's side of a request. */
export type ClientErrorCode = ErrorCode | 'timeout' | 'disconnected' | 'bad_reply';

/** A request the server refused (its typed error), that timed out, or whose reply was malformed. */
export class RequestError extends Error {
  override readonly name = 'RequestError';
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly event: string,
  ) {
    super(message);
  }
}

/** The server refused the connection (socket.io middleware error with `err.data = { code, message }`). */
export class ConnectError extends Error {
  override readonly name = 'ConnectError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface ConnectOptions {
  /** Called on every connection attempt, so a reconnect can present a different token. */
  token: () => string;
  /** Default: reconnect with socket.io's back-off. */
  reconnection?: boolean;
}

/** Connects to a namespace of the page's own origin. */
export function connect(namespace: '/customer' | '/teller' | '/supervisor', opts: ConnectOptions): AppSocket {
  const reconnection = opts.reconnection ?? true;
  const socket: AppSocket = io(namespace, {
    auth: (cb) => cb({ token: opts.token() }),
    // WebSocket first; long-polling stays as the fallback for proxies that block upgrades.
    transports: ['websocket', 'polling'],
    reconnection,
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });
  // The server disconnects pages only when a node shuts down (a restart, a deployment): come back,
  // through the load balancer to another node or to the node restarted. socket.io does not retry
  // a disconnect the server made by itself.
  socket.on('disconnect', (reason) => {
    if (reason === 'io server disconnect' && reconnection) setTimeout(() => socket.connect(), 250 + Math.random() * 750);
  });
  return socket;
}

/**
 * The typed refusal behind a connect_error, or undefined for transport errors (server unreachable),
 * after which socket.io keeps retrying on its own. After a refusal it does not retry.
 */
export function connectErrorOf(err: Error & { data?: unknown }): ConnectError | undefined {
  const parsed = protocolErrorSchema.safeParse(err.data);
  return parsed.success ? new ConnectError(parsed.data.code, parsed.data.message) : undefined;
}

const DEFAULT_TIMEOUT_MS = 15_000;

/** Sends a client message; resolves with the acknowledgement's data or throws a RequestError. */
export async function request<E extends ClientMessageName>(
  socket: AppSocket,
  event: E,
  payload: ClientMessage<E>,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<ClientAckData[E]> {
  const emitter = socket.timeout(timeoutMs) as unknown as {
    emit(ev: string, payload: unknown, cb: (err: Error | null, reply: unknown) => void): void;
  };
  const reply = await new Promise<unknown>((resolve, reject) =>
    emitter.emit(event, payload, (err, r) => {
      if (!err) resolve(r);
      // socket.io fails pending acknowledgements at once when the socket disconnects.
      else if (!socket.connected) reject(new RequestError('disconnected', `disconnected before ${event} was answered`, event));
      else reject(new RequestError('timeout', `no answer to ${event} within ${timeoutMs} ms`, event));
    }),
  );
  const envelope = ackEnvelopeSchema.safeParse(reply);
  if (!envelope.success) throw new RequestError('bad_reply', `malformed answer to ${event}`, event);
  if (!envelope.data.ok) throw new RequestError(envelope.data.error.code, envelope.data.error.message, event);
  const schema = ackSchemas[event] as z.ZodType<ClientAckData[E]> | undefined;
  if (!schema) return envelope.data.data as ClientAckData[E];
  const data = schema.safeParse(envelope.data.data);
  if (!data.success) throw new RequestError('bad_reply', `malformed answer to ${event}: ${data.error.message}`, event);
  return data.data;
}

/**
 * Subscribes to a server message; messages that do not match the protocol's schema are dropped
 * (and logged), never handed to the page. Returns the unsubscribe function.
 */
export function listen<E extends ServerEventName>(socket: AppSocket, event: E, handler: (msg: ServerMessage<E>) => void): () => void {
  const schema = serverMessages[event];
  const fn = (raw: unknown) => {
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      console.warn(`videoteller: dropped a malformed ${event} message`, parsed.error.issues);
      return;
    }
    handler(parsed.data);
  };
  const emitter = socket as unknown as { on(e: string, f: (raw: unknown) => void): void; off(e: string, f: (raw: unknown) => void): void };
  emitter.on(event, fn);
  return () => emitter.off(event, fn);
}

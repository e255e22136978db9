import { io as connect, type Socket } from 'socket.io-client';
import type { Ack, ClientToServerEvents, ServerToClientEvents } from '../../signaling/protocol.ts';

export type Client = Socket<ServerToClientEvents, ClientToServerEvents>;

/** socket.io clients for tests, closed together by closeAll(). */
export class SocketClients {
  private readonly sockets: Client[] = [];
  constructor(private readonly url: () => string) {}

  open(ns: '/customer' | '/teller' | '/supervisor', token: unknown): Client {
    const socket: Client = connect(`${this.url()}${ns}`, {
      auth: token === undefined ? {} : { token },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
    });
    this.sockets.push(socket);
    return socket;
  }

  closeAll(): void {
    for (const s of this.sockets.splice(0)) s.disconnect();
  }
}

/** Resolves when connected, or with the typed connect error. */
export function outcome(socket: Client): Promise<{ connected: true } | { connected: false; code: string; message: string }> {
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ connected: true }));
    socket.once('connect_error', (err: Error & { data?: { code: string; message: string } }) =>
      resolve({ connected: false, code: err.data?.code ?? 'none', message: err.data?.message ?? err.message }),
    );
  });
}

/** Sends any payload (tests send malformed ones on purpose) and resolves with the acknowledgement. */
export function request<T>(socket: Client, event: string, payload: unknown): Promise<Ack<T>> {
  return new Promise((resolve) =>
    (socket as unknown as { emit(e: string, p: unknown, cb: (r: Ack<T>) => void): void }).emit(event, payload, resolve),
  );
}

export function next<E extends keyof ServerToClientEvents>(socket: Client, event: E): Promise<Parameters<ServerToClientEvents[E]>[0]> {
  return new Promise((resolve) =>
    (socket as unknown as { once(e: string, fn: (p: unknown) => void): void }).once(event, resolve as (p: unknown) => void),
  );
}

import type { Namespace } from 'socket.io';
import { hashCustomerToken, newCustomerToken } from '../src/auth/customer-tokens.ts';
import type { StaffTokens } from '../src/auth/staff-tokens.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import type { CallCoordinator } from './calls.ts';
import { sessionRoom } from './calls.ts';
import type { GraceTimers } from './grace.ts';
import { connectError, handle, SignalingError, type AppSocket } from './handlers.ts';
import { registerMediaHandlers } from './media-handlers.ts';
import { customerAuthSchema, type ClientToServerEvents, type ServerToClientEvents } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { isTerminal } from './session-state.ts';
import type { OneTimeCodeFlow } from './one-time-codes.ts';
import { boardFor } from './board.ts';
import { rateCall } from './ratings.ts';

export interface CustomerNamespaceDeps {
  store: StateStore;
  router: QueueRouter;
  calls: CallCoordinator;
  evidence: EvidenceSink;
  staffTokens: StaffTokens;
  grace: GraceTimers;
  otp: OneTimeCodeFlow;
  log: Logger;
}

interface CustomerSocketData {
  sessionId: string;
  /** Set when this connection spent the join token: the page keeps it to reconnect. */
  resumeToken?: string;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * `/customer`: the customer's phone page. The handshake carries the single-use join token (spent
 * on first use, answered with a resume token for reconnects within the session) or the resume token.
 */
export function setupCustomerNamespace(ns: Namespace<ClientToServerEvents, ServerToClientEvents>, deps: CustomerNamespaceDeps): void {
  const { store, router, calls, evidence, staffTokens, grace, log } = deps;

  ns.use((socket, next) => {
    authenticate(socket.handshake.auth)
      .then((data) => {
        socket.data = data;
        next();
      })
      .catch((err: Error & { data?: unknown }) => {
        if (!err.data) log.error({ err }, 'customer handshake failed');
        next(err.data ? err : connectError('internal', 'internal error'));
      });
  });

  async function authenticate(auth: unknown): Promise<CustomerSocketData> {
    const parsed = customerAuthSchema.safeParse(auth);
    if (!parsed.success) throw connectError('token_invalid', 'a customer token is required');
    const { token } = parsed.data;
    const hash = hashCustomerToken(token);
    const session = await store.findSessionByTokenHash(hash);
    if (!session) {
      if (JWT_SHAPE.test(token) && (await staffTokens.verify(token)).ok) {
        throw connectError('wrong_namespace', 'staff tokens are for the teller console, not the customer page');
      }
      throw connectError('token_invalid', 'unknown token');
    }
    if (isTerminal(session.state)) {
      throw connectError(session.state === 'expired' ? 'token_expired' : 'invalid_state', `the session has ${session.state}`);
    }
    if (hash === session.resumeTokenHash) return { sessionId: session.id };
    if (session.tokenUsed) throw connectError('token_reused', 'this join link was already used');
    if (Date.now() > session.tokenExpiresAt) throw connectError('token_expired', 'this join link has expired');
    const resume = newCustomerToken();
    // Spend the token atomically: of two pages racing with the same link, one wins.
    await store.updateSession(session.id, (s) => {
      if (s.tokenUsed) throw connectError('token_reused', 'this join link was already used');
      return { ...s, tokenUsed: true, resumeTokenHash: resume.hash };
    });
    return { sessionId: session.id, resumeToken: resume.token };
  }

  ns.on('connection', (socket: AppSocket) => {
    const { sessionId, resumeToken } = socket.data as CustomerSocketData;
    const slog = log.child({ sessionId, side: 'customer' });
    void socket.join(sessionRoom(sessionId));
    slog.info('customer connected');

    void (async () => {
      const session = await store.getSession(sessionId);
      if (!session) return;
      socket.emit('session:info', {
        sessionId,
        state: session.state,
        businessType: session.businessType,
        language: session.language,
        ...(resumeToken ? { resumeToken } : {}),
      });
      if (grace.cancel(`customer:${sessionId}`)) slog.info('customer back within the grace period');
      const call = calls.get(sessionId);
      if (call && session.state === 'reconnecting') {
        await router.markReconnected(sessionId, 'customer');
        await call.media.resetParticipant('customer');
        socket.emit('call:start', { callId: call.callId, sessionId, role: 'customer', peerName: 'Teller' });
      }
      const position = (await router.queuePositions()).get(sessionId);
      if (position) socket.emit('queue:position', position);
    })().catch((err) => slog.error({ err }, 'customer connect failed'));

    handle(socket, 'queue:join', slog, async () => {
      const session = await store.getSession(sessionId);
      if (session?.state === 'created') {
        await evidence.append({
          sessionId,
          type: 'customer.consent',
          actor: 'customer',
          payload: { recording: true, identityCheck: true, userAgent: String(socket.handshake.headers['user-agent'] ?? '').slice(0, 256) },
        });
      } else if (session?.state !== 'queued' && session?.state !== 'offered') {
        throw new SignalingError('invalid_state', `cannot join the queue while ${session?.state ?? 'unknown'}`);
      }
      await router.enqueue(sessionId);
      return (await router.queuePositions()).get(sessionId) ?? { position: 1, estimatedWaitS: 0 };
    });

    handle(socket, 'queue:leave', slog, async () => {
      const s = await router.abandon(sessionId, 'customer_left');
      if (!s) throw new SignalingError('invalid_state', 'not waiting in the queue');
      return { state: s.state };
    });

    handle(socket, 'call:hangup', slog, async () => {
      calls.require(sessionId);
      await calls.end(sessionId, 'customer', 'customer_hangup');
      return { state: (await store.getSession(sessionId))!.state };
    });

    handle(socket, 'otp:submit', slog, async ({ code }) => deps.otp.submit(sessionId, calls.require(sessionId).tellerId, code));

    // The page stays connected after call:ended to offer the rating (a reconnect is refused once the session ended).
    handle(socket, 'rating:submit', slog, async (msg) => {
      const result = await rateCall({ store, evidence, log: slog }, sessionId, msg);
      boardFor({ store, router, log }).changed();
      return result;
    });

    registerMediaHandlers(socket, 'customer', async () => sessionId, calls, slog);

    socket.on('disconnect', (reason) => {
      slog.info({ reason }, 'customer disconnected');
      void (async () => {
        if ((await ns.in(sessionRoom(sessionId)).fetchSockets()).length > 0) return;
        const session = await store.getSession(sessionId);
        if (!session || isTerminal(session.state)) return;
        if (session.state === 'in_call') await router.markReconnecting(sessionId, 'customer');
        grace.start(`customer:${sessionId}`, () => {
          void (async () => {
            const s = await store.getSession(sessionId);
            if (s?.state === 'reconnecting' || (s?.state === 'decided' && calls.get(sessionId))) await calls.end(sessionId, 'system', 'peer_lost');
            else if (s && (s.state === 'queued' || s.state === 'offered' || s.state === 'created')) await router.abandon(sessionId, 'customer_disconnected');
          })().catch((err) => slog.error({ err }, 'grace action failed'));
        });
      })().catch((err) => slog.error({ err }, 'customer disconnect handling failed'));
    });
  });
}

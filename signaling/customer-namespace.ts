import type { Namespace } from 'socket.io';
import { hashCustomerToken, newCustomerToken } from '../src/auth/customer-tokens.ts';
import type { StaffTokens } from '../src/auth/staff-tokens.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import { sessionRoom } from './calls.ts';
import type { CallOps } from './call-operations.ts';
import type { Presence } from './presence.ts';
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
  /** Operations on the customer's call, run on the node holding its media. */
  ops: CallOps;
  presence: Presence;
  evidence: EvidenceSink;
  staffTokens: StaffTokens;
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
  const { store, router, ops, presence, evidence, staffTokens, log } = deps;

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
      await presence.connected('customer', sessionId);
      // Back during a call (on this node or another): the call resumes where its media are.
      if (session.state === 'reconnecting' && (await ops.rejoin(sessionId, { participant: 'customer', actor: 'customer' }))) {
        slog.info('customer back within the grace period');
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
      await ops.hangUp(sessionId, { actor: 'customer', reason: 'customer_hangup' });
      return { state: (await store.getSession(sessionId))!.state };
    });

    handle(socket, 'otp:submit', slog, async ({ code }) => {
      const s = await store.getSession(sessionId);
      if (!s?.tellerId || (s.state !== 'in_call' && s.state !== 'reconnecting')) throw new SignalingError('invalid_state', 'no call in progress');
      return deps.otp.submit(sessionId, s.tellerId, code);
    });

    // The page stays connected after call:ended to offer the rating (a reconnect is refused once the session ended).
    handle(socket, 'rating:submit', slog, async (msg) => {
      const result = await rateCall({ store, evidence, log: slog }, sessionId, msg);
      boardFor({ store, router, log }).changed();
      return result;
    });

    registerMediaHandlers(socket, 'customer', async () => sessionId, ops, slog);

    socket.on('disconnect', (reason) => {
      slog.info({ reason }, 'customer disconnected');
      presence.disconnected('customer', sessionId).catch((err) => slog.error({ err }, 'customer disconnect handling failed'));
    });
  });
}

import type { Namespace } from 'socket.io';
import type { StaffIdentity, StaffTokens } from '../src/auth/staff-tokens.ts';
import { requireStaffHandshake } from './staff-auth.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import { tellerRoom } from './calls.ts';
import type { CallOps } from './call-operations.ts';
import type { Presence } from './presence.ts';
import { handle, SignalingError, type AppSocket } from './handlers.ts';
import { registerMediaHandlers } from './media-handlers.ts';
import type { ClientToServerEvents, ServerToClientEvents } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { toOffer, toTellerInfo } from './views.ts';
import type { OneTimeCodeFlow } from './one-time-codes.ts';

export interface TellerNamespaceDeps {
  store: StateStore;
  router: QueueRouter;
  /** Operations on the teller's call, run on the node holding its media. */
  ops: CallOps;
  presence: Presence;
  staffTokens: StaffTokens;
  otp: OneTimeCodeFlow;
  log: Logger;
}

/** `/teller`: the teller console. The handshake carries the staff JWT from POST /api/auth/login. */
export function setupTellerNamespace(ns: Namespace<ClientToServerEvents, ServerToClientEvents>, deps: TellerNamespaceDeps): void {
  const { store, router, ops, presence, log } = deps;

  requireStaffHandshake(ns, deps, ['teller'], 'teller console');

  ns.on('connection', (socket: AppSocket) => {
    const { staff } = socket.data as { staff: StaffIdentity };
    const tlog = log.child({ tellerId: staff.id, side: 'teller' });
    void socket.join(tellerRoom(staff.id));
    tlog.info('teller connected');

    // Presence registered (tellerOnline) before any message of this console is handled: a console
    // that sends `teller:availability` the moment it connects must find itself.
    const online = (async () => {
      // Listed as connected here (its grace period, if any, cancelled at once) while presence registers.
      const listed = presence.connected('teller', staff.id);
      const teller = await router.tellerOnline(staff);
      await listed;
      socket.emit('teller:info', toTellerInfo(teller));
      // A reconnecting console gets back what it was in the middle of.
      if (teller.state === 'reserved' && teller.offerId) {
        const offer = await store.getOffer(teller.offerId);
        const session = offer && (await store.getSession(offer.sessionId));
        if (offer?.state === 'pending' && session) socket.emit('offer:new', toOffer(offer, session));
      }
      // Back during a call (on this node or another): the call resumes where its media are.
      if (teller.state === 'busy' && teller.sessionId) await ops.rejoin(teller.sessionId, { participant: 'teller', actor: staff.id });
    })().catch((err) => tlog.error({ err }, 'teller connect failed'));
    const handleOnline: typeof handle = (sock, event, l, handler) =>
      handle(sock, event, l, async (msg) => {
        await online;
        return handler(msg);
      });

    const currentSession = async () => (await store.getTeller(staff.id))?.sessionId;
    /** The session of the teller's call, for the messages that only make sense in one. */
    const callSession = async (): Promise<string> => {
      const sessionId = await currentSession();
      if (!sessionId) throw new SignalingError('invalid_state', 'no call in progress');
      return sessionId;
    };

    handleOnline(socket, 'teller:availability', tlog, async ({ status }) => ({ state: (await router.setAvailability(staff.id, status)).state }));

    handleOnline(socket, 'offer:accept', tlog, async ({ offerId }) => {
      const { session } = await router.accept(staff.id, offerId);
      return { callId: session.callId!, sessionId: session.id };
    });

    handleOnline(socket, 'offer:decline', tlog, async ({ offerId }) => ({ state: (await router.decline(staff.id, offerId)).state }));

    handle(socket, 'call:hangup', tlog, async () => {
      const sessionId = await currentSession();
      const teller = await store.getTeller(staff.id);
      if (!sessionId || teller?.state !== 'busy') throw new SignalingError('invalid_state', 'no call in progress');
      await ops.end(sessionId, { actor: staff.id, reason: 'teller_hangup' });
      return { state: (await store.getSession(sessionId))!.state };
    });

    handle(socket, 'call:decide', tlog, async (msg) => ops.decide(await callSession(), { staff, msg }));

    handle(socket, 'liveness:start', tlog, async () => ops.startLiveness(await callSession(), {}));

    handle(socket, 'document:capture', tlog, async ({ checklist }) => ops.captureDocument(await callSession(), { tellerId: staff.id, checklist }));

    handle(socket, 'otp:send', tlog, async () => deps.otp.send(staff.id, await callSession()));

    registerMediaHandlers(socket, 'teller', currentSession, ops, tlog);

    socket.on('disconnect', (reason) => {
      tlog.info({ reason }, 'teller disconnected');
      presence.disconnected('teller', staff.id).catch((err) => tlog.error({ err }, 'teller disconnect handling failed'));
    });
  });
}

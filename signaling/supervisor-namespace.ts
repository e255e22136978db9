import type { Namespace } from 'socket.io';
import type { StaffIdentity, StaffTokens } from '../src/auth/staff-tokens.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import { boardFor, type CallStatsSource } from './board.ts';
import { cosignDecision, pendingDecisions, type DecisionDeps } from './decisions.ts';
import { handle, type AppSocket } from './handlers.ts';
import type { ClientToServerEvents, ServerToClientEvents } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { requireStaffHandshake } from './staff-auth.ts';

/** Every supervisor console is in this room: a decision waiting for co-signing is shown to all of them. */
export const SUPERVISORS_ROOM = 'supervisors';

export interface SupervisorNamespaceDeps {
  store: StateStore;
  router: QueueRouter;
  staffTokens: StaffTokens;
  decisions: DecisionDeps;
  /** The call statistics (service level, abandonment, connection rate); absent: the board shows them as not available. */
  callStats?: CallStatsSource;
  log: Logger;
}

/**
 * `/supervisor`: the supervisor board: the live floor (`board:update` on connect and on changes,
 * at most one per second) and the pending dual-control decisions, co-sign or refuse.
 */
export function setupSupervisorNamespace(ns: Namespace<ClientToServerEvents, ServerToClientEvents>, deps: SupervisorNamespaceDeps): void {
  requireStaffHandshake(ns, deps, ['supervisor'], 'supervisor board');
  const blog = deps.log.child({ part: 'board' });
  const board = boardFor({ store: deps.store, router: deps.router, log: blog, ...(deps.callStats ? { callStats: deps.callStats } : {}) });
  // One subscription for the namespace while anyone watches: each snapshot goes to the room once.
  let watchers = 0;
  let unsubscribe: (() => void) | undefined;

  ns.on('connection', (socket: AppSocket) => {
    const { staff } = socket.data as { staff: StaffIdentity };
    const slog = deps.log.child({ supervisorId: staff.id, side: 'supervisor' });
    void socket.join(SUPERVISORS_ROOM);
    slog.info('supervisor connected');

    if (watchers++ === 0) unsubscribe = board.subscribe((b) => ns.to(SUPERVISORS_ROOM).emit('board:update', b));
    board
      .snapshot()
      .then((b) => socket.emit('board:update', b))
      .catch((err) => slog.error({ err }, 'board snapshot failed'));

    handle(socket, 'cosign:list', slog, async () => ({ pending: await pendingDecisions(deps.decisions) }));
    handle(socket, 'cosign:decide', slog, async (msg) => cosignDecision({ ...deps.decisions, log: slog.child({ sessionId: msg.sessionId }) }, staff, msg));

    socket.on('disconnect', (reason) => {
      slog.info({ reason }, 'supervisor disconnected');
      if (--watchers === 0) {
        unsubscribe?.();
        unsubscribe = undefined;
      }
    });
  });
}

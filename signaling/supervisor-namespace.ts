import type { Namespace } from 'socket.io';
import type { StaffIdentity, StaffTokens } from '../src/auth/staff-tokens.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import { cosignDecision, pendingDecisions, type DecisionDeps } from './decisions.ts';
import { handle, type AppSocket } from './handlers.ts';
import type { ClientToServerEvents, ServerToClientEvents } from './protocol.ts';
import { requireStaffHandshake } from './staff-auth.ts';

/** Every supervisor console is in this room: a decision waiting for co-signing is shown to all of them. */
export const SUPERVISORS_ROOM = 'supervisors';

export interface SupervisorNamespaceDeps {
  store: StateStore;
  staffTokens: StaffTokens;
  decisions: DecisionDeps;
  log: Logger;
}

/** `/supervisor`: the supervisor board: pending dual-control decisions, co-sign or refuse. */
export function setupSupervisorNamespace(ns: Namespace<ClientToServerEvents, ServerToClientEvents>, deps: SupervisorNamespaceDeps): void {
  requireStaffHandshake(ns, deps, ['supervisor'], 'supervisor board');

  ns.on('connection', (socket: AppSocket) => {
    const { staff } = socket.data as { staff: StaffIdentity };
    const slog = deps.log.child({ supervisorId: staff.id, side: 'supervisor' });
    void socket.join(SUPERVISORS_ROOM);
    slog.info('supervisor connected');

    handle(socket, 'cosign:list', slog, async () => ({ pending: await pendingDecisions(deps.decisions) }));
    handle(socket, 'cosign:decide', slog, async (msg) => cosignDecision({ ...deps.decisions, log: slog.child({ sessionId: msg.sessionId }) }, staff, msg));

    socket.on('disconnect', (reason) => slog.info({ reason }, 'supervisor disconnected'));
  });
}

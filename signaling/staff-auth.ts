import type { Namespace } from 'socket.io';
import { hashCustomerToken } from '../src/auth/customer-tokens.ts';
import type { StaffIdentity, StaffTokens } from '../src/auth/staff-tokens.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import { connectError } from './handlers.ts';
import { staffAuthSchema, type ClientToServerEvents, type ServerToClientEvents } from './protocol.ts';

type StaffRole = StaffIdentity['role'];

/**
 * The handshake of a staff namespace (/teller, /supervisor): the staff JWT from POST
 * /api/auth/login, of one of the namespace's roles. A customer token gets `wrong_namespace`, so
 * a page sent to the wrong place says so instead of "invalid token". Sets `socket.data.staff`.
 */
export function requireStaffHandshake(
  ns: Namespace<ClientToServerEvents, ServerToClientEvents>,
  deps: { staffTokens: StaffTokens; store: StateStore; log: Logger },
  roles: readonly StaffRole[],
  what: string,
): void {
  ns.use((socket, next) => {
    authenticate(socket.handshake.auth)
      .then((staff) => {
        socket.data = { staff };
        next();
      })
      .catch((err: Error & { data?: unknown }) => {
        if (!err.data) deps.log.error({ err }, 'staff handshake failed');
        next(err.data ? err : connectError('internal', 'internal error'));
      });
  });

  async function authenticate(auth: unknown): Promise<StaffIdentity> {
    const parsed = staffAuthSchema.safeParse(auth);
    if (!parsed.success) throw connectError('unauthorized', 'a staff token is required');
    const result = await deps.staffTokens.verify(parsed.data.token);
    if (!result.ok) {
      if (await deps.store.findSessionByTokenHash(hashCustomerToken(parsed.data.token))) {
        throw connectError('wrong_namespace', `customer tokens are for the customer page, not the ${what}`);
      }
      throw connectError(result.error, result.error === 'token_expired' ? 'the sign-in has expired' : 'invalid staff token');
    }
    if (!roles.includes(result.staff.role)) throw connectError('forbidden', `role ${result.staff.role} cannot use the ${what}`);
    return result.staff;
  }
}

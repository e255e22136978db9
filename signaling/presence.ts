/**
 * Who is connected where, and what happens when a customer's page or a teller's console goes
 * away: a grace period, then the call fails (peer lost), the waiting customer is taken out of the
 * queue (abandoned), or the teller goes offline.
 *
 * With several nodes a page that drops may come back on another node, and a node may die with
 * its pages' grace periods in its memory. So:
 * - before acting, a grace period asks every node whether the page is back (socket.io's
 *   `fetchSockets()` spans the nodes through the Redis adapter);
 * - each node lists the pages connected to it in the store (`presence:<node>`), and when a node
 *   is lost, the node that takes over starts a grace period for each of them, as if each page had
 *   just dropped from it.
 */
import type { Namespace } from 'socket.io';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import type { CallOps } from './call-operations.ts';
import { sessionRoom, tellerRoom } from './calls.ts';
import type { GraceTimers } from './grace.ts';
import type { ClientToServerEvents, ServerToClientEvents } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { isTerminal } from './session-state.ts';

type AppNamespace = Namespace<ClientToServerEvents, ServerToClientEvents>;
type Side = 'customer' | 'teller';

export const presenceIndex = (nodeId: string) => `presence:${nodeId}`;

export interface PresenceDeps {
  namespaces: { customer: AppNamespace; teller: AppNamespace };
  store: StateStore;
  router: QueueRouter;
  grace: GraceTimers;
  ops: Pick<CallOps, 'end'>;
  nodeId: string;
  log: Logger;
}

export class Presence {
  private leaving = false;

  constructor(private readonly deps: PresenceDeps) {}

  /**
   * This node is shutting down: the pages it disconnects stay listed under it, with no grace
   * period started here (it would die with the node), so the node that takes over starts them.
   */
  leave(): void {
    this.leaving = true;
  }

  /** A page connected to this node (idempotent: a second tab is one entry). */
  async connected(side: Side, id: string): Promise<void> {
    this.deps.grace.cancel(`${side}:${id}`);
    await this.deps.store.addToIndex(presenceIndex(this.deps.nodeId), `${side}:${id}`);
  }

  /** A page left this node: unlisted once its last socket here is gone, then the grace period. */
  async disconnected(side: Side, id: string): Promise<void> {
    if (this.leaving) return;
    if (!this.connectedHere(side, id)) await this.deps.store.removeFromIndex(presenceIndex(this.deps.nodeId), `${side}:${id}`);
    await (side === 'customer' ? this.customerGone(id) : this.tellerGone(id));
  }

  /** Another node was lost: its pages are treated as dropped from it, here. */
  async takeOver(lostNode: string): Promise<void> {
    const index = presenceIndex(lostNode);
    for (const member of await this.deps.store.indexMembers(index)) {
      const [side, id] = splitMember(member);
      // Connected to this process (the lost node is this node's earlier life and the page is back).
      if (side && id && this.connectedHere(side, id)) continue;
      if (side && id) await (side === 'customer' ? this.customerGone(id) : this.tellerGone(id));
      await this.deps.store.removeFromIndex(index, member);
    }
  }

  private async customerGone(sessionId: string): Promise<void> {
    const { store, router, grace, ops } = this.deps;
    const log = this.deps.log.child({ sessionId, side: 'customer' });
    if (await this.connectedAnywhere('customer', sessionId)) return;
    const session = await store.getSession(sessionId);
    if (!session || isTerminal(session.state)) return;
    if (session.state === 'in_call') await router.markReconnecting(sessionId, 'customer');
    grace.start(`customer:${sessionId}`, () => {
      void (async () => {
        if (await this.connectedAnywhere('customer', sessionId)) return;
        const s = await store.getSession(sessionId);
        if (s?.state === 'reconnecting' || s?.state === 'decided') await ops.end(sessionId, { actor: 'system', reason: 'peer_lost' });
        else if (s && (s.state === 'queued' || s.state === 'offered' || s.state === 'created')) await router.abandon(sessionId, 'customer_disconnected');
      })().catch((err) => log.error({ err }, 'grace action failed'));
    });
  }

  private async tellerGone(tellerId: string): Promise<void> {
    const { store, router, grace, ops } = this.deps;
    const log = this.deps.log.child({ tellerId, side: 'teller' });
    if (await this.connectedAnywhere('teller', tellerId)) return;
    const teller = await store.getTeller(tellerId);
    if (teller?.state !== 'busy' || !teller.sessionId) {
      await router.tellerOffline(tellerId);
      return;
    }
    const sessionId = teller.sessionId;
    await router.markReconnecting(sessionId, tellerId);
    grace.start(`teller:${tellerId}`, () => {
      void (async () => {
        if (await this.connectedAnywhere('teller', tellerId)) return;
        await ops.end(sessionId, { actor: 'system', reason: 'peer_lost' });
        await router.tellerOffline(tellerId);
      })().catch((err) => log.error({ err, sessionId }, 'grace action failed'));
    });
  }

  private async connectedAnywhere(side: Side, id: string): Promise<boolean> {
    const ns = this.deps.namespaces[side];
    return (await ns.in(side === 'customer' ? sessionRoom(id) : tellerRoom(id)).fetchSockets()).length > 0;
  }

  private connectedHere(side: Side, id: string): boolean {
    const ns = this.deps.namespaces[side];
    return (ns.adapter.rooms.get(side === 'customer' ? sessionRoom(id) : tellerRoom(id))?.size ?? 0) > 0;
  }
}

function splitMember(member: string): [Side | undefined, string | undefined] {
  const at = member.indexOf(':');
  const side = member.slice(0, at);
  return side === 'customer' || side === 'teller' ? [side, member.slice(at + 1)] : [undefined, undefined];
}

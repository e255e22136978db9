import type { Server as HttpServer } from 'node:http';
import { Server } from 'socket.io';
import type { StaffTokens } from '../src/auth/staff-tokens.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import type { MediaWorkerPool } from '../media/worker-pool.ts';
import { CallCoordinator, callsIndex, sessionRoom, tellerRoom, type CallIdentityDeps } from './calls.ts';
import { CallDispatch } from './call-dispatch.ts';
import { defineCallOperations } from './call-operations.ts';
import { Presence } from './presence.ts';
import type { Cluster } from '../src/cluster/types.ts';
import type { CallRecordingDeps } from './call-recording.ts';
import { setupCustomerNamespace } from './customer-namespace.ts';
import { GraceTimers } from './grace.ts';
import { NAMESPACES, type ClientToServerEvents, type DecisionResult, type ServerToClientEvents } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { setupTellerNamespace } from './teller-namespace.ts';
import { toOffer, toTellerInfo } from './views.ts';
import type { DecisionDeps } from './decisions.ts';
import type { SocketAdapter } from './socket-adapter.ts';
import { OneTimeCodeFlow, type OneTimeCodeDeps } from './one-time-codes.ts';
import { setupSupervisorNamespace, SUPERVISORS_ROOM } from './supervisor-namespace.ts';
import type { AuthorizationPolicy } from '../src/authorization/policy.ts';
import type { CallStatsSource } from './board.ts';
import type { SessionRecord } from '../src/store/types.ts';

export interface SignalingDeps {
  store: StateStore;
  router: QueueRouter;
  pool: MediaWorkerPool;
  evidence: EvidenceSink;
  staffTokens: StaffTokens;
  reconnectGraceMs: number;
  /** Record issuance. */
  records: Pick<DecisionDeps, 'issueRecord'>;
  /** The transaction policy: its `decisions` say when a supervisor co-signs and when a one-time code is needed. */
  policy: AuthorizationPolicy;
  /** Called once a session's verification record is issued (the bank's webhook). */
  onRecordIssued?: (session: SessionRecord, result: DecisionResult) => void;
  /** One-time codes and the webhooks that deliver them. */
  oneTimeCodes: Pick<OneTimeCodeDeps, 'codes' | 'webhooks'>;
  /** The identity checks during calls (absent: calls run without them). */
  identity?: Omit<CallIdentityDeps, 'store'>;
  /** This node among the deployment's nodes (one node: a LocalCluster). */
  cluster: Cluster;
  /** Several nodes: socket.io rooms shared through Redis (signaling/socket-adapter.ts). */
  socketAdapter?: SocketAdapter['adapter'];
  /** Where calls are recorded (absent: calls are not recorded; the shipped server always records). */
  recording?: CallRecordingDeps;
  /** The contact-centre figures the supervisor board shows (absent: the board shows them as not available). */
  callStats?: CallStatsSource;
  log: Logger;
}

export interface Signaling {
  io: Server<ClientToServerEvents, ServerToClientEvents>;
  calls: CallCoordinator;
  close(): Promise<void>;
}

/** socket.io on the app's HTTP server: the namespaces, and router events pushed to the pages. */
export function createSignaling(httpServer: HttpServer, deps: SignalingDeps): Signaling {
  const { router, log } = deps;
  const io = new Server<ClientToServerEvents, ServerToClientEvents>(httpServer, {
    // Past this hard cap socket.io drops the connection; below it, handlers answer a message over
    // MAX_MESSAGE_BYTES with a typed too_large error.
    maxHttpBufferSize: 1024 * 1024,
    serveClient: false,
    // Pages are served from the same origin; other origins are refused.
    cors: { origin: false },
    ...(deps.socketAdapter ? { adapter: deps.socketAdapter } : {}),
  });
  const customer = io.of(NAMESPACES.customer);
  const teller = io.of(NAMESPACES.teller);
  const supervisor = io.of(NAMESPACES.supervisor);
  const calls = new CallCoordinator({
    pool: deps.pool,
    router,
    store: deps.store,
    evidence: deps.evidence,
    namespaces: { customer, teller },
    nodeId: deps.cluster.self.id,
    log,
    ...(deps.identity ? { identity: { ...deps.identity, store: deps.store } } : {}),
    ...(deps.recording ? { recording: deps.recording } : {}),
  });
  const grace = new GraceTimers(deps.reconnectGraceMs);

  const otp = new OneTimeCodeFlow({
    ...deps.oneTimeCodes,
    store: deps.store,
    policy: deps.policy,
    toCustomer: (sessionId, expiresAt) => customer.to(sessionRoom(sessionId)).emit('otp:requested', { expiresAt }),
    toTeller: (tellerId, result) => teller.to(tellerRoom(tellerId)).emit('otp:status', result),
  });
  const decisions: DecisionDeps = {
    ...deps.records,
    router,
    store: deps.store,
    evidence: deps.evidence,
    policy: deps.policy,
    identityOf: (id) => calls.get(id)?.identity,
    oneTimeCodeOf: (id) => otp.status(id),
    endCall: (sessionId, actor) => calls.end(sessionId, actor, 'decided'),
    notify: {
      pending: (d) => supervisor.to(SUPERVISORS_ROOM).emit('cosign:pending', d),
      cosignClosed: (c) => supervisor.to(SUPERVISORS_ROOM).emit('cosign:closed', c),
      issued: (session, result) => {
        teller.to(tellerRoom(session.decision!.tellerId)).emit('decision:final', result);
        deps.onRecordIssued?.(session, result);
      },
    },
    log,
  };
  const ops = defineCallOperations(new CallDispatch(calls, deps.store, deps.cluster, log.child({ part: 'call-dispatch' })), calls, decisions);
  const presence = new Presence({ namespaces: { customer, teller }, store: deps.store, router, grace, ops, nodeId: deps.cluster.self.id, log });
  // Another node died: its calls fail (their media died with it); its pages get their grace period here.
  deps.cluster.onNodeLost(async (lostNode) => {
    for (const sessionId of await deps.store.indexMembers(callsIndex(lostNode))) await calls.endOrphaned(sessionId, lostNode);
    await presence.takeOver(lostNode);
  });
  setupCustomerNamespace(customer, { ...deps, ops, presence, otp, log: log.child({ ns: 'customer' }) });
  setupTellerNamespace(teller, { ...deps, ops, presence, otp, log: log.child({ ns: 'teller' }) });
  setupSupervisorNamespace(supervisor, { ...deps, decisions, log: log.child({ ns: 'supervisor' }) });

  router.on('offer', (offer, session) => teller.to(tellerRoom(offer.tellerId)).emit('offer:new', toOffer(offer, session)));
  router.on('offerClosed', (offer) =>
    teller.to(tellerRoom(offer.tellerId)).emit('offer:closed', { offerId: offer.id, state: offer.state, reason: offer.reason ?? offer.state }),
  );
  router.on('teller', (t) => teller.to(tellerRoom(t.id)).emit('teller:info', toTellerInfo(t)));
  router.on('session', (s) =>
    customer.to(sessionRoom(s.id)).emit('session:info', { sessionId: s.id, state: s.state, businessType: s.businessType, language: s.language }),
  );

  // Queue positions change in bursts (one routing pass moves many): coalesce to one push per tick.
  let positionsPending = false;
  router.on('queueChanged', () => {
    if (positionsPending) return;
    positionsPending = true;
    setImmediate(() => {
      positionsPending = false;
      router
        .queuePositions()
        .then((positions) => {
          for (const [sessionId, pos] of positions) customer.to(sessionRoom(sessionId)).emit('queue:position', pos);
        })
        .catch((err) => log.error({ err }, 'queue positions failed'));
    });
  });

  return {
    io,
    calls,
    async close() {
      presence.leave();
      grace.clear();
      // The HTTP server belongs to Fastify, which closes it (and socket.io's engine with it).
      // disconnectSockets on the server reaches the main namespace only: close every namespace's
      // sockets, or graceful shutdown waits in http.close() for each page to leave by itself.
      for (const ns of [customer, teller, supervisor]) ns.disconnectSockets(true);
      io.disconnectSockets(true);
      // With the Redis adapter, each namespace's adapter unsubscribes here, before its Redis
      // connections are closed (signaling/socket-adapter.ts), so nothing is sent on a closed one.
      await Promise.all([...io._nsps.values()].map((ns) => ns.adapter.close()));
    },
  };
}

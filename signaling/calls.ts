import type { Namespace } from 'socket.io';
import type { Logger } from '../src/logger.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { SessionRecord, TellerRecord } from '../src/store/types.ts';
import { CallMedia } from '../media/call-media.ts';
import { FrameTap } from '../media/frame-tap.ts';
import type { MediaWorkerPool } from '../media/worker-pool.ts';
import { CallIdentity } from '../src/identity/call-identity.ts';
import type { ChallengeType } from '../src/identity/liveness.ts';
import type { IdentityService } from '../src/identity/service.ts';
import type { StateStore } from '../src/store/types.ts';
import type { CallEnded, ClientToServerEvents, ServerToClientEvents } from './protocol.ts';
import type { QueueRouter } from './router.ts';
import { SignalingError } from './handlers.ts';
import { CallRecording, type CallRecordingDeps, type RecordingSummary } from './call-recording.ts';

export type Participant = 'customer' | 'teller';
type AppNamespace = Namespace<ClientToServerEvents, ServerToClientEvents>;

export interface ActiveCall {
  callId: string;
  sessionId: string;
  tellerId: string;
  media: CallMedia;
  log: Logger;
  /** The server's identity checks, when the session has a reference photo and the customer sends video. */
  identity?: CallIdentity;
  /** The tap of the customer's current video producer (a new one after the customer reconnects). */
  tap?: FrameTap;
  ended?: boolean;
  /** Starts of the identity checks run one after another (a fast reconnect brings two producers). */
  identityStarts?: Promise<void>;
  /** The call's recording (every call is recorded when the server is given a place to store it). */
  recording?: CallRecording;
}

export interface CallIdentityDeps {
  identity: IdentityService;
  store: StateStore;
  /** Tests: issue exactly these challenges, in this order, instead of random ones. */
  challengeTypes?: ChallengeType[];
}

export const sessionRoom = (sessionId: string) => `session:${sessionId}`;
export const tellerRoom = (tellerId: string) => `teller:${tellerId}`;
/** The store index of the calls whose media a node holds (taken over when the node is lost). */
export const callsIndex = (nodeId: string) => `calls:${nodeId}`;

export interface CallCoordinatorDeps {
  pool: MediaWorkerPool;
  router: QueueRouter;
  store: StateStore;
  evidence: EvidenceSink;
  namespaces: { customer: AppNamespace; teller: AppNamespace };
  /** This node's id: sessions name the node holding their call's media (SessionRecord.mediaNode). */
  nodeId: string;
  log: Logger;
  identity?: CallIdentityDeps;
  recording?: CallRecordingDeps;
}

/**
 * Owns the calls in progress on this node: creates the call's media when a teller accepts, tells
 * each side about the other's producers, and tears everything down when the call ends, whoever
 * ends it (hang-up, lost peer, media worker death, shutdown).
 */
export class CallCoordinator {
  private readonly bySession = new Map<string, ActiveCall>();
  /** Recordings of ended calls, until stored: the decision waits for its call's (the record names it). */
  private readonly recordings = new Map<string, Promise<RecordingSummary | undefined>>();

  private readonly pool: MediaWorkerPool;
  private readonly router: QueueRouter;
  private readonly store: StateStore;
  private readonly evidence: EvidenceSink;
  private readonly namespaces: CallCoordinatorDeps['namespaces'];
  private readonly log: Logger;
  private readonly identityDeps?: CallIdentityDeps;
  private readonly recordingDeps?: CallRecordingDeps;
  readonly nodeId: string;

  constructor(deps: CallCoordinatorDeps) {
    ({ pool: this.pool, router: this.router, store: this.store, evidence: this.evidence, namespaces: this.namespaces, log: this.log, nodeId: this.nodeId } = deps);
    this.identityDeps = deps.identity;
    this.recordingDeps = deps.recording;
    const { router } = deps;
    // The node whose router accepted (the teller's node) holds the call's media.
    router.on('accepted', (session, teller) => {
      this.start(session, teller).catch(async (err) => {
        this.log.error({ err, sessionId: session.id }, 'call setup failed');
        await this.end(session.id, 'system', 'failed').catch(() => undefined);
      });
    });
  }

  get size(): number {
    return this.bySession.size;
  }

  private async start(session: SessionRecord, teller: TellerRecord): Promise<void> {
    const callId = session.callId!;
    const log = this.log.child({ sessionId: session.id, callId });
    const media = await CallMedia.create(this.pool, { callId, sessionId: session.id, logger: log });
    const call: ActiveCall = { callId, sessionId: session.id, tellerId: teller.id, media, log };
    this.bySession.set(session.id, call);
    // Named before either side hears of the call, so every node forwards their media requests here.
    await this.store.updateSession(session.id, (s) => ({ ...s, mediaNode: this.nodeId }));
    await this.store.addToIndex(callsIndex(this.nodeId), session.id);
    if (this.recordingDeps) call.recording = CallRecording.start(media, this.recordingDeps, this.evidence, log.child({ part: 'recorder' }));

    media.on('producer', ({ participant, producerId, kind }) => {
      this.emitTo(call, other(participant), 'media:newProducer', { producerId, kind });
      if (participant === 'customer' && kind === 'video') {
        call.identityStarts = (call.identityStarts ?? Promise.resolve())
          .then(() => this.startIdentity(call))
          .catch((err) => log.error({ err }, 'identity checks could not start'));
      }
      void this.evidence
        .append({ sessionId: session.id, type: 'media.producer', actor: participant === 'teller' ? teller.id : 'customer', payload: { callId, participant, kind, producerId } })
        .catch((err) => log.error({ err }, 'evidence append failed'));
    });
    media.on('closed', () => {
      if (this.bySession.get(session.id) === call) void this.end(session.id, 'system', 'failed');
    });

    await this.evidence.append({
      sessionId: session.id,
      type: 'call.started',
      actor: teller.id,
      payload: { callId, tellerId: teller.id, node: this.nodeId, worker: media.workerPid ?? null },
    });
    log.info({ tellerId: teller.id }, 'call started');
    this.emitTo(call, 'customer', 'call:start', { callId, sessionId: session.id, role: 'customer', peerName: teller.displayName });
    this.emitTo(call, 'teller', 'call:start', { callId, sessionId: session.id, role: 'teller', peerName: 'Customer' });
  }

  /** The call a participant's socket may act on; a session without a call is invalid_state. */
  require(sessionId: string | undefined): ActiveCall {
    const call = sessionId ? this.bySession.get(sessionId) : undefined;
    if (!call) throw new SignalingError('invalid_state', 'no call in progress');
    return call;
  }

  get(sessionId: string): ActiveCall | undefined {
    return this.bySession.get(sessionId);
  }

  /** Announces the other side's existing producers, e.g. after a receive transport is created. */
  announceExistingProducers(call: ActiveCall, to: Participant): void {
    for (const p of call.media.producers(other(to))) this.emitTo(call, to, 'media:newProducer', p);
  }

  /**
   * Ends the call of a session: state, recording, media, both pages. Idempotent: a second caller
   * (the customer hangs up while the teller's decision ends the call) gets the same recording.
   * Resolves with the stored recording's summary (undefined when there is none; that is evidence).
   */
  async end(sessionId: string, actor: string, reason: CallEnded['reason']): Promise<RecordingSummary | undefined> {
    const call = this.bySession.get(sessionId);
    this.bySession.delete(sessionId);
    const to = reason === 'failed' || reason === 'peer_lost' ? 'failed' : 'ended';
    await this.router.endCall(sessionId, actor, reason, reason === 'server_shutdown' ? 'ended' : to);
    if (!call) return this.recordings.get(sessionId);
    void this.store.removeFromIndex(callsIndex(this.nodeId), sessionId).catch((err) => call.log.warn({ err }, 'call index update failed'));
    call.ended = true;
    await call.tap?.close().catch((err) => call.log.warn({ err }, 'frame tap close failed'));
    // Finished before the router closes, so the last moments are in the file.
    const recording = call.recording?.finish();
    if (recording) {
      this.recordings.set(sessionId, recording);
      setTimeout(() => this.recordings.delete(sessionId), 60_000).unref();
    }
    await recording;
    call.media.close();
    await call.identity?.close().catch((err) => call.log.error({ err }, 'identity close failed'));
    await this.evidence.append({ sessionId, type: 'call.ended', actor, payload: { callId: call.callId, reason } });
    call.log.info({ reason }, 'call ended');
    const ended = { callId: call.callId, sessionId, reason };
    this.emitTo(call, 'customer', 'call:ended', ended);
    this.emitTo(call, 'teller', 'call:ended', ended);
    return recording;
  }

  /**
   * A participant is back (their page reconnected, to this node or another) while the call waits
   * for them: the call resumes and their page starts its media again. False: no call here to resume.
   */
  async rejoin(sessionId: string, participant: Participant, actor: string): Promise<boolean> {
    const call = this.bySession.get(sessionId);
    if (!call || call.ended) return false;
    await this.router.markReconnected(sessionId, actor);
    await call.media.resetParticipant(participant);
    this.emitTo(call, participant, 'call:start', {
      callId: call.callId,
      sessionId,
      role: participant,
      peerName: participant === 'customer' ? 'Teller' : 'Customer',
    });
    return true;
  }

  /**
   * The call of a session whose media node was lost (its heartbeat ran out): the media are gone with
   * it, so the call fails, with the lost node named in the evidence, and both pages are told.
   */
  async endOrphaned(sessionId: string, lostNode: string): Promise<void> {
    // This process's own call (the lost node is this node's earlier life): alive, leave it.
    if (this.bySession.has(sessionId)) return;
    const session = await this.store.getSession(sessionId);
    await this.store.removeFromIndex(callsIndex(lostNode), sessionId);
    if (!session?.callId || session.mediaNode !== lostNode) return;
    const ended = await this.router.endCall(sessionId, 'system', 'media_node_lost', 'failed');
    if (!ended) return;
    await this.evidence.append({ sessionId, type: 'call.ended', actor: 'system', payload: { callId: session.callId, reason: 'failed', lostNode } });
    this.log.warn({ sessionId, callId: session.callId, lostNode }, 'call failed: its media node was lost');
    const msg = { callId: session.callId, sessionId, reason: 'failed' as const };
    this.namespaces.customer.to(sessionRoom(sessionId)).emit('call:ended', msg);
    if (session.tellerId) this.namespaces.teller.to(tellerRoom(session.tellerId)).emit('call:ended', msg);
  }

  /**
   * The server's own look at the customer: tap their video (server-side decoder) into the face
   * engine against the session's reference photo. The checks (CallIdentity) live as long as the
   * call; the tap is rebuilt when the customer's video producer is replaced (reconnect).
   */
  private async startIdentity(call: ActiveCall): Promise<void> {
    const deps = this.identityDeps;
    if (!deps || call.ended) return;
    const session = await deps.store.getSession(call.sessionId);
    if (!session?.reference) {
      this.emitTo(call, 'teller', 'identity:status', { active: false, reason: 'no_reference_photo' });
      return;
    }
    let engine;
    try {
      engine = await deps.identity.engine();
    } catch (err) {
      call.log.error({ err }, 'face engine unavailable: the call goes on without identity checks');
      this.emitTo(call, 'teller', 'identity:status', { active: false, reason: 'engine_unavailable' });
      return;
    }
    if (call.ended) return;
    const settings = deps.identity.settings;
    if (!call.identity) {
      const identity = new CallIdentity({
        sessionId: call.sessionId,
        callId: call.callId,
        reference: session.reference.descriptor,
        engine,
        evidence: this.evidence,
        blobs: deps.identity.blobs,
        settings,
        setFrameRate: (fps) => call.tap?.setRate(fps),
        log: call.log.child({ part: 'identity' }),
      });
      identity.on('report', (r) => this.emitTo(call, 'teller', 'identity:report', r));
      identity.on('liveness', (v) => this.emitTo(call, 'teller', 'identity:liveness', v));
      identity.on('guidance', (code) => this.emitTo(call, 'customer', 'identity:guidance', { code }));
      identity.on('prompt', (challenge) => this.emitTo(call, 'customer', 'liveness:prompt', { challenge }));
      call.identity = identity;
    }
    const previous = call.tap;
    call.tap = undefined;
    await previous?.close().catch(() => undefined);
    const tap = await FrameTap.forCall(call.media, {
      logger: call.log.child({ part: 'frame-tap' }),
      fps: call.identity.livenessView().status === 'running' ? settings.challengeFrameRate : settings.frameRate,
      maxFps: Math.max(settings.frameRate, settings.challengeFrameRate),
    });
    if (call.ended) {
      await tap.close();
      return;
    }
    call.tap = tap;
    const identity = call.identity;
    tap.on('frame', (f) => identity.onFrame(f));
    tap.on('closed', ({ reason }) => {
      if (call.tap === tap) call.tap = undefined;
      if (reason === 'failed' && !call.ended) this.emitTo(call, 'teller', 'identity:status', { active: false, reason: 'no_customer_video' });
    });
    this.emitTo(call, 'teller', 'identity:status', { active: true, reason: 'checking' });
  }

  /** Starts the liveness challenges of a call (the teller asks; the server picks and judges them). */
  startLiveness(sessionId: string) {
    const call = this.require(sessionId);
    if (!call.identity) throw new SignalingError('invalid_state', 'the identity check is not running for this call (no reference photo, or no video yet)');
    return call.identity.startLiveness(this.identityDeps?.challengeTypes);
  }

  /** The teller captures the ID document from the server's own picture of the customer. */
  async captureDocument(sessionId: string, tellerId: string, checklist: Record<string, boolean>) {
    const call = this.require(sessionId);
    if (!call.identity) throw new SignalingError('invalid_state', 'the identity check is not running for this call (no reference photo, or no video yet)');
    const c = await call.identity.captureDocument(tellerId, checklist);
    return {
      imageSha256: c.sha256,
      faceCount: c.faceCount,
      documentFace: c.documentFace && {
        matchesReference: c.documentFace.matchesReference,
        distanceToReference: Math.round(c.documentFace.distanceToReference * 1e4) / 1e4,
        matchesLive: c.documentFace.matchesLive,
        distanceToLive: c.documentFace.distanceToLive === null ? null : Math.round(c.documentFace.distanceToLive * 1e4) / 1e4,
      },
    };
  }

  /** Ends every call on this node (graceful shutdown). */
  async endAll(reason: CallEnded['reason']): Promise<void> {
    await Promise.all([...this.bySession.keys()].map((id) => this.end(id, 'system', reason)));
  }

  private emitTo<E extends keyof ServerToClientEvents>(call: ActiveCall, who: Participant, event: E, ...args: Parameters<ServerToClientEvents[E]>): void {
    const target = who === 'customer' ? this.namespaces.customer.to(sessionRoom(call.sessionId)) : this.namespaces.teller.to(tellerRoom(call.tellerId));
    (target.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args);
  }
}

export function other(p: Participant): Participant {
  return p === 'customer' ? 'teller' : 'customer';
}

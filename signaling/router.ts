import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from '../src/logger.ts';
import type { EvidenceSink } from '../src/evidence.ts';
import type { OfferRecord, SessionDecision, SessionRecord, StateStore, TellerRecord } from '../src/store/types.ts';
import type { StaffIdentity } from '../src/auth/staff-tokens.ts';
import type { QueuePosition, SessionState, TellerState } from './protocol.ts';
import { assertTransition, isTerminal } from './session-state.ts';

export interface RouterOptions {
  mode: 'longest_idle' | 'random';
  offerTimeoutMs: number;
  maxMissedOffers: number;
  wrapUpMs: number;
  /** Seconds of waiting that raise a session's effective priority by one level. */
  priorityAgeingS: number;
  /** A teller who declined a session is not offered the same session again for this long. */
  declineCooldownMs: number;
  /**
   * How often this router looks in the shared store for offers and wrap-ups that are overdue
   * because the node whose timer should have ended them died (default 1000; 0: no periodic sweep).
   */
  sweepIntervalMs?: number;
  /**
   * How long past its deadline an offer or a wrap-up must be before the sweep ends it, so that the
   * owning node's own timer, which is precise, normally wins (default 1000).
   */
  sweepGraceMs?: number;
  random?: () => number;
  now?: () => number;
}

export interface RouterEvents {
  offer: [offer: OfferRecord, session: SessionRecord];
  offerClosed: [offer: OfferRecord];
  teller: [teller: TellerRecord];
  session: [session: SessionRecord];
  queueChanged: [];
  accepted: [session: SessionRecord, teller: TellerRecord];
}

export class RoutingError extends Error {
  constructor(readonly code: 'not_found' | 'invalid_state' | 'forbidden', message: string) {
    super(message);
    this.name = 'RoutingError';
  }
}

/** Seconds a call lasts, until real calls have been measured on this node. */
const INITIAL_HANDLE_TIME_S = 300;
const DEFAULT_SWEEP_INTERVAL_MS = 1000;
const DEFAULT_SWEEP_GRACE_MS = 1000;

/**
 * Queue and routing. A routing pass takes the waiting sessions by effective priority (priority
 * plus one level per `priorityAgeingS` waited, so low priority never starves) then by longest
 * wait, and offers each to the longest-idle eligible teller (or a random one, for rules that ask
 * for random assignment against collusion). Every state change runs under the store's
 * "routing" lock, so an accept, a timeout and a customer leaving cannot interleave.
 *
 * Offer timeouts and wrap-up ends are timers on the node that started them. With several nodes
 * sharing a store that node can die with its timers, so every router also sweeps the store
 * periodically and ends what is overdue (see sweep()); both paths re-check the state under the
 * lock, so whichever comes first acts and the other finds nothing to do.
 */
export class QueueRouter extends EventEmitter<RouterEvents> {
  private readonly offerTimers = new Map<string, NodeJS.Timeout>();
  private readonly wrapUpTimers = new Map<string, NodeJS.Timeout>();
  private readonly sweepTimer: NodeJS.Timeout | undefined;
  private readonly sweepGraceMs: number;
  /** The sweep that is running, shared by whoever asks for one meanwhile. */
  private sweeping: Promise<void> | undefined;
  /** expiresAt of the pending offers the sweep has seen (it never changes), so it reads each once. */
  private readonly offerExpiry = new Map<string, number>();
  private readonly now: () => number;
  private readonly random: () => number;
  /** Exponential moving average of call durations, for estimated waits. */
  private handleTimeS = INITIAL_HANDLE_TIME_S;
  private closed = false;
  /** The routing pass waiting for the lock, shared by every route() call until it starts. */
  private pendingPass: Promise<void> | undefined;

  constructor(
    private readonly store: StateStore,
    private readonly evidence: EvidenceSink,
    private readonly opts: RouterOptions,
    private readonly log: Logger,
  ) {
    super();
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.sweepGraceMs = opts.sweepGraceMs ?? DEFAULT_SWEEP_GRACE_MS;
    const interval = opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (interval > 0) {
      this.sweepTimer = setInterval(() => void this.sweep().catch((err) => this.log.warn({ err }, 'sweep for overdue offers failed')), interval);
      // The sweep never keeps the process alive on its own.
      this.sweepTimer.unref();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Sessions

  /** Moves a session to a new state, checked by the state machine and recorded as evidence. */
  private async transition(
    id: string,
    to: SessionState,
    actor: string,
    reason: string,
    patch: Partial<SessionRecord> = {},
  ): Promise<SessionRecord> {
    let from: SessionState | undefined;
    const updated = await this.store.updateSession(id, (s) => {
      assertTransition(s.state, to);
      from = s.state;
      return { ...s, ...patch, state: to };
    });
    await this.evidence.append({
      sessionId: id,
      type: 'session.transition',
      actor,
      payload: { from, to, reason, ...(updated.tellerId ? { tellerId: updated.tellerId } : {}) },
    });
    this.log.info({ sessionId: id, from, to, reason }, 'session state');
    this.emit('session', updated);
    return updated;
  }

  async enqueue(sessionId: string): Promise<SessionRecord> {
    const session = await this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (s.state === 'queued' || s.state === 'offered') return s;
      const queued = await this.transition(sessionId, 'queued', 'customer', 'joined_queue', { queuedAt: s.queuedAt ?? this.now() });
      await this.store.enqueue(sessionId);
      return queued;
    });
    this.emit('queueChanged');
    await this.route();
    return session;
  }

  /** The customer left (explicitly, or did not come back within the grace period) before a call. */
  async abandon(sessionId: string, reason: string): Promise<SessionRecord | undefined> {
    const result = await this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (s.state !== 'queued' && s.state !== 'offered' && s.state !== 'created') return undefined;
      if (s.state === 'offered' && s.offerId) await this.closeOffer(s.offerId, 'canceled', 'customer_left', 'leave');
      await this.store.dequeue(sessionId);
      return this.transition(sessionId, 'abandoned', 'customer', reason, { endedAt: this.now(), endReason: reason });
    });
    this.emit('queueChanged');
    await this.route();
    return result;
  }

  /** Ends a call (hang-up either side, peer lost, shutdown): the teller goes to wrap-up. */
  async endCall(sessionId: string, actor: string, reason: string, to: 'ended' | 'failed' = 'ended'): Promise<SessionRecord | undefined> {
    const result = await this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (isTerminal(s.state)) return undefined;
      // A decided session has its record: whatever ends the call afterwards, it ends, not fails.
      const ended = await this.transition(sessionId, s.state === 'decided' ? 'ended' : to, actor, reason, { endedAt: this.now(), endReason: reason });
      if (s.answeredAt) this.handleTimeS = 0.8 * this.handleTimeS + 0.2 * ((this.now() - s.answeredAt) / 1000);
      if (s.tellerId) await this.startWrapUp(s.tellerId);
      return ended;
    });
    this.emit('queueChanged');
    return result;
  }

  /**
   * The teller of a call decides it: `issue` writes the verification record (durable, signed)
   * while the routing lock is held, then the session moves to `decided` carrying the record.
   * Only the teller in the call may decide, once, while the call is up.
   */
  async decide(
    sessionId: string,
    tellerId: string,
    reason: string,
    issue: (session: SessionRecord) => Promise<SessionDecision>,
  ): Promise<SessionRecord> {
    return this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (s.tellerId !== tellerId) throw new RoutingError('forbidden', 'only the teller of this call can decide it');
      if (s.state !== 'in_call') throw new RoutingError('invalid_state', s.decision ? 'this session is already decided' : `cannot decide while ${s.state}`);
      const decision = await issue(s);
      return this.transition(sessionId, 'decided', tellerId, reason, { decision });
    });
  }

  /**
   * Moves a decided session's decision on (its recording stored, the supervisor's co-signature, the
   * record issued) under the routing lock, so two answers cannot race. `update` may throw to refuse.
   */
  async updateDecision(sessionId: string, update: (s: SessionRecord, d: SessionDecision) => Promise<SessionDecision>): Promise<SessionRecord> {
    return this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (!s.decision) throw new RoutingError('not_found', 'this session has no decision');
      const decision = await update(s, s.decision);
      return this.store.updateSession(sessionId, (x) => ({ ...x, decision }));
    });
  }

  async markReconnecting(sessionId: string, actor: string): Promise<void> {
    await this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (s.state === 'in_call') await this.transition(sessionId, 'reconnecting', actor, 'connection_lost');
    });
  }

  async markReconnected(sessionId: string, actor: string): Promise<void> {
    await this.locked(async () => {
      const s = await this.requireSession(sessionId);
      if (s.state === 'reconnecting') await this.transition(sessionId, 'in_call', actor, 'reconnected');
    });
  }

  /** The join token ran out before the customer joined. */
  async expire(sessionId: string): Promise<void> {
    await this.locked(async () => {
      const s = await this.requireSession(sessionId);
      // Only a session whose customer never joined expires; a waiting customer keeps their place.
      if (s.state === 'created') {
        await this.transition(sessionId, 'expired', 'system', 'token_expired', { endedAt: this.now(), endReason: 'expired' });
      }
    });
    this.emit('queueChanged');
  }

  // -------------------------------------------------------------------------------------------
  // Tellers

  /** A teller's console connected: register presence (offline until they choose available). */
  async tellerOnline(staff: StaffIdentity): Promise<TellerRecord> {
    return this.locked(async () => {
      const existing = await this.store.getTeller(staff.id);
      if (existing && existing.state !== 'offline') {
        // A second console or a reconnect: keep the state the teller is in.
        return this.store.updateTeller(staff.id, (t) => ({ ...t, displayName: staff.displayName, skills: staff.skills }));
      }
      const teller: TellerRecord = {
        id: staff.id,
        displayName: staff.displayName,
        skills: staff.skills,
        state: 'away',
        idleSince: this.now(),
        missedOffers: 0,
      };
      await this.store.putTeller(teller);
      this.emit('teller', teller);
      return teller;
    });
  }

  async setAvailability(tellerId: string, status: 'available' | 'away'): Promise<TellerRecord> {
    const teller = await this.locked(async () => {
      const t = await this.requireTeller(tellerId);
      if (status === 'available') {
        if (t.state === 'available') return t;
        if (t.state !== 'away' && t.state !== 'offline') {
          throw new RoutingError('invalid_state', `a teller who is ${t.state} cannot become available`);
        }
        return this.setTeller(tellerId, { state: 'available', idleSince: this.now(), missedOffers: 0 });
      }
      if (t.state === 'reserved' && t.offerId) {
        await this.closeOffer(t.offerId, 'rejected', 'teller_went_away', 'queue');
        return this.setTeller(tellerId, { state: 'away', offerId: undefined, sessionId: undefined });
      }
      if (t.state === 'busy') throw new RoutingError('invalid_state', 'end the call before going away');
      return this.setTeller(tellerId, { state: 'away', wrapUpUntil: undefined });
    });
    if (status === 'available') await this.route();
    return teller;
  }

  /** The teller's console is gone (disconnected): offers go back to the queue. */
  async tellerOffline(tellerId: string): Promise<void> {
    await this.locked(async () => {
      const t = await this.store.getTeller(tellerId);
      if (!t) return;
      if (t.state === 'reserved' && t.offerId) await this.closeOffer(t.offerId, 'canceled', 'teller_disconnected', 'queue');
      this.clearTimer(this.wrapUpTimers, tellerId);
      await this.setTeller(tellerId, { state: 'offline', offerId: undefined, sessionId: undefined, wrapUpUntil: undefined });
    });
    await this.route();
  }

  async accept(tellerId: string, offerId: string): Promise<{ session: SessionRecord; teller: TellerRecord }> {
    const result = await this.locked(async () => {
      const offer = await this.store.getOffer(offerId);
      if (!offer || offer.tellerId !== tellerId) throw new RoutingError('not_found', 'no such offer for this teller');
      if (offer.state !== 'pending') throw new RoutingError('invalid_state', `the offer is ${offer.state}`);
      this.clearTimer(this.offerTimers, offerId);
      const closed = await this.store.updateOffer(offerId, (o) => ({ ...o, state: 'accepted', closedAt: this.now(), reason: 'accepted' }));
      await this.recordOffer(closed);
      const callId = randomUUID();
      await this.store.dequeue(offer.sessionId);
      const session = await this.transition(offer.sessionId, 'in_call', tellerId, 'offer_accepted', {
        callId,
        tellerId,
        answeredAt: this.now(),
        offerId: undefined,
      });
      const teller = await this.setTeller(tellerId, { state: 'busy', missedOffers: 0, offerId: undefined, sessionId: session.id });
      return { session, teller };
    });
    this.emit('queueChanged');
    this.emit('accepted', result.session, result.teller);
    return result;
  }

  async decline(tellerId: string, offerId: string): Promise<TellerRecord> {
    const teller = await this.locked(async () => {
      const offer = await this.store.getOffer(offerId);
      if (!offer || offer.tellerId !== tellerId) throw new RoutingError('not_found', 'no such offer for this teller');
      if (offer.state !== 'pending') throw new RoutingError('invalid_state', `the offer is ${offer.state}`);
      await this.closeOffer(offerId, 'rejected', 'declined', 'queue');
      return this.requireTeller(tellerId);
    });
    await this.route();
    return teller;
  }

  // -------------------------------------------------------------------------------------------
  // Routing

  /**
   * One routing pass: offers waiting sessions to free tellers. A pass that is waiting for the lock
   * and has not started yet will read every change made before it starts, so later callers share
   * it instead of queueing a pass each (a burst of hang-ups or joins makes one pass, not N).
   */
  route(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.pendingPass) return this.pendingPass;
    const pass = this.locked(async () => {
      // Started: from here on a change needs a new pass (only one pass is ever pending, this one).
      this.pendingPass = undefined;
      const now = this.now();
      let free = (await this.store.listTellers()).filter((t) => t.state === 'available');
      // Nobody free: nothing to offer, and no need to read the whole queue.
      if (free.length === 0) return 0;
      const sessions = (await Promise.all((await this.store.queuedSessionIds()).map((id) => this.store.getSession(id))))
        .filter((s): s is SessionRecord => s?.state === 'queued')
        .sort((a, b) => this.compareForService(a, b, now));
      let count = 0;
      for (const session of sessions) {
        if (free.length === 0) break;
        const eligible = free.filter(
          (t) => isEligible(t, session) && !(now - (session.declinedBy[t.id] ?? -Infinity) < this.opts.declineCooldownMs),
        );
        if (eligible.length === 0) continue;
        const teller = this.pickTeller(eligible);
        await this.createOffer(session, teller, now);
        free = free.filter((t) => t.id !== teller.id);
        count++;
      }
      return count;
    })
      .then((offered) => {
        if (offered > 0) this.emit('queueChanged');
      });
    this.pendingPass = pass;
    // A pass that failed before it started (the lock not acquired) must not stay pending for ever.
    const clear = () => {
      if (this.pendingPass === pass) this.pendingPass = undefined;
    };
    pass.then(clear, clear);
    return pass;
  }

  private compareForService(a: SessionRecord, b: SessionRecord, now: number): number {
    const byPriority = this.effectivePriority(b, now) - this.effectivePriority(a, now);
    return byPriority !== 0 ? byPriority : (a.queuedAt ?? a.createdAt) - (b.queuedAt ?? b.createdAt);
  }

  effectivePriority(s: SessionRecord, now = this.now()): number {
    const waitedS = (now - (s.queuedAt ?? now)) / 1000;
    return s.priority + Math.floor(waitedS / this.opts.priorityAgeingS);
  }

  private pickTeller(eligible: TellerRecord[]): TellerRecord {
    if (this.opts.mode === 'random') return eligible[Math.floor(this.random() * eligible.length)]!;
    return eligible.reduce((best, t) => (t.idleSince < best.idleSince ? t : best));
  }

  private async createOffer(session: SessionRecord, teller: TellerRecord, now: number): Promise<void> {
    const offer: OfferRecord = {
      id: randomUUID(),
      sessionId: session.id,
      tellerId: teller.id,
      state: 'pending',
      createdAt: now,
      expiresAt: now + this.opts.offerTimeoutMs,
    };
    await this.store.createOffer(offer);
    await this.setTeller(teller.id, { state: 'reserved', offerId: offer.id, sessionId: session.id });
    const offeredSession = await this.transition(session.id, 'offered', 'system', 'offer_created', { offerId: offer.id, tellerId: teller.id });
    this.offerTimers.set(
      offer.id,
      setTimeout(() => {
        this.offerTimers.delete(offer.id);
        void this.timeoutOffer(offer.id).catch((err) => this.log.error({ err, offerId: offer.id }, 'offer timeout failed'));
      }, this.opts.offerTimeoutMs),
    );
    this.log.info({ sessionId: session.id, tellerId: teller.id, offerId: offer.id }, 'offer');
    this.emit('offer', offer, offeredSession);
  }

  /**
   * Times out an offer that is still pending (from this node's timer, or from the sweep with
   * `dueBy`: only if it expired by then). Idempotent: under the lock, an offer already accepted,
   * declined or timed out (by this node or another) is left alone. Answers whether it acted.
   */
  private async timeoutOffer(offerId: string, dueBy?: number): Promise<boolean> {
    const timedOut = await this.locked(async () => {
      const offer = await this.store.getOffer(offerId);
      if (!offer || offer.state !== 'pending') return false;
      if (dueBy !== undefined && offer.expiresAt > dueBy) return false;
      await this.closeOffer(offerId, 'timeout', 'not_answered', 'queue');
      return true;
    });
    if (timedOut) await this.route();
    return timedOut;
  }

  /**
   * Closes a pending offer. The teller goes back to available, or away after too many missed
   * offers. With sessionNext 'queue' the session goes back to the queue keeping its original
   * queuedAt; with 'leave' the caller moves it on (the customer left or the session expired).
   */
  private async closeOffer(offerId: string, state: 'rejected' | 'timeout' | 'canceled', reason: string, sessionNext: 'queue' | 'leave'): Promise<void> {
    this.clearTimer(this.offerTimers, offerId);
    const offer = await this.store.updateOffer(offerId, (o) => ({ ...o, state, closedAt: this.now(), reason }));
    await this.recordOffer(offer);
    this.emit('offerClosed', offer);

    const teller = await this.store.getTeller(offer.tellerId);
    if (teller?.state === 'reserved' && teller.offerId === offerId) {
      const missed = state === 'timeout' ? teller.missedOffers + 1 : teller.missedOffers;
      const next: TellerState = missed >= this.opts.maxMissedOffers ? 'away' : 'available';
      // A declined or missed offer does not reset idleSince: the teller keeps their turn.
      await this.setTeller(teller.id, { state: next, missedOffers: next === 'away' ? 0 : missed, offerId: undefined, sessionId: undefined });
      if (next === 'away') this.log.warn({ tellerId: teller.id, missed }, 'teller set away after missed offers');
    }

    const session = await this.store.getSession(offer.sessionId);
    if (sessionNext === 'queue' && session?.state === 'offered' && session.offerId === offerId) {
      const declinedBy = state === 'rejected' ? { ...session.declinedBy, [offer.tellerId]: this.now() } : session.declinedBy;
      await this.transition(session.id, 'queued', 'system', `offer_${state}`, { offerId: undefined, tellerId: undefined, declinedBy });
    }
    this.emit('queueChanged');
  }

  private async startWrapUp(tellerId: string): Promise<void> {
    const t = await this.store.getTeller(tellerId);
    if (!t || t.state === 'offline') return;
    if (this.opts.wrapUpMs === 0) {
      await this.setTeller(tellerId, { state: 'available', idleSince: this.now(), sessionId: undefined });
      queueMicrotask(() => void this.route().catch((err) => this.log.error({ err }, 'routing failed')));
      return;
    }
    const until = this.now() + this.opts.wrapUpMs;
    await this.setTeller(tellerId, { state: 'wrap_up', wrapUpUntil: until, sessionId: undefined });
    this.clearTimer(this.wrapUpTimers, tellerId);
    this.wrapUpTimers.set(
      tellerId,
      setTimeout(() => {
        this.wrapUpTimers.delete(tellerId);
        void this.finishWrapUp(tellerId).catch((err) => this.log.error({ err, tellerId }, 'wrap-up end failed'));
      }, this.opts.wrapUpMs),
    );
  }

  /**
   * Ends a teller's wrap-up (from this node's timer, or from the sweep with `dueBy`: only a wrap-up
   * that was due by then, not a later one the teller started meanwhile). Answers whether it acted.
   */
  private async finishWrapUp(tellerId: string, dueBy?: number): Promise<boolean> {
    const finished = await this.locked(async () => {
      const t = await this.store.getTeller(tellerId);
      if (t?.state !== 'wrap_up') return false;
      if (dueBy !== undefined && t.wrapUpUntil !== undefined && t.wrapUpUntil > dueBy) return false;
      this.clearTimer(this.wrapUpTimers, tellerId);
      await this.setTeller(tellerId, { state: 'available', idleSince: this.now(), wrapUpUntil: undefined });
      return true;
    });
    if (finished) await this.route();
    return finished;
  }

  // -------------------------------------------------------------------------------------------
  // Sweep: what another node's timers should have done

  /**
   * Ends offers and wrap-ups overdue by more than `sweepGraceMs`, whichever node started them.
   * Reads the tellers list only (a reserved teller names its offer; a teller in wrap-up carries
   * wrapUpUntil), plus each pending offer once for its expiry: never the offers made in the past.
   * The periodic timer runs it; a sweep asked for while one runs shares that one.
   */
  sweep(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.sweeping) return this.sweeping;
    const run = this.sweepOnce();
    this.sweeping = run;
    const clear = () => {
      if (this.sweeping === run) this.sweeping = undefined;
    };
    run.then(clear, clear);
    return run;
  }

  private async sweepOnce(): Promise<void> {
    const dueBy = this.now() - this.sweepGraceMs;
    const reservedOffers = new Set<string>();
    const overdueOffers: { offerId: string; tellerId: string; sessionId?: string }[] = [];
    const overdueWrapUps: string[] = [];
    for (const t of await this.store.listTellers()) {
      if (t.state === 'reserved' && t.offerId) {
        reservedOffers.add(t.offerId);
        let expiresAt = this.offerExpiry.get(t.offerId);
        if (expiresAt === undefined) {
          const offer = await this.store.getOffer(t.offerId);
          // Not pending: the teller's record is about to be updated by whoever closed it.
          if (offer?.state !== 'pending') continue;
          expiresAt = offer.expiresAt;
          this.offerExpiry.set(t.offerId, expiresAt);
        }
        if (expiresAt <= dueBy) overdueOffers.push({ offerId: t.offerId, tellerId: t.id, sessionId: t.sessionId });
      } else if (t.state === 'wrap_up' && (t.wrapUpUntil === undefined || t.wrapUpUntil <= dueBy)) {
        overdueWrapUps.push(t.id);
      }
    }
    // Forget the offers no teller is reserved for any more.
    for (const id of this.offerExpiry.keys()) if (!reservedOffers.has(id)) this.offerExpiry.delete(id);

    for (const o of overdueOffers) {
      if (this.closed) return;
      try {
        if (await this.timeoutOffer(o.offerId, dueBy)) this.log.info(o, 'overdue offer timed out by the sweep');
      } catch (err) {
        this.log.error({ err, ...o }, 'overdue offer timeout failed');
      }
    }
    for (const tellerId of overdueWrapUps) {
      if (this.closed) return;
      try {
        if (await this.finishWrapUp(tellerId, dueBy)) this.log.info({ tellerId }, 'overdue wrap-up ended by the sweep');
      } catch (err) {
        this.log.error({ err, tellerId }, 'overdue wrap-up end failed');
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Queue positions and estimated waits

  /**
   * Position of each waiting session among the waiting sessions that need the same skills, in
   * service order; estimated wait = rounds of calls ahead × average call duration, where one
   * round serves as many sessions as there are staffed tellers with those skills.
   */
  async queuePositions(): Promise<Map<string, QueuePosition>> {
    const now = this.now();
    const sessions = (await Promise.all((await this.store.queuedSessionIds()).map((id) => this.store.getSession(id))))
      .filter((s): s is SessionRecord => s?.state === 'queued' || s?.state === 'offered')
      .sort((a, b) => this.compareForService(a, b, now));
    const tellers = (await this.store.listTellers()).filter((t) => t.state !== 'offline' && t.state !== 'away');
    const result = new Map<string, QueuePosition>();
    const seen = new Map<string, number>();
    for (const s of sessions) {
      const key = `${s.businessType}/${s.language}`;
      const position = (seen.get(key) ?? 0) + 1;
      seen.set(key, position);
      const staffed = tellers.filter((t) => isEligible(t, s)).length;
      const rounds = staffed === 0 ? position : Math.floor((position - 1) / staffed);
      result.set(s.id, { position, estimatedWaitS: Math.round(rounds * this.handleTimeS) });
    }
    return result;
  }

  // -------------------------------------------------------------------------------------------

  /** Stops making offers (draining for shutdown); calls in progress go on. */
  pause(): void {
    this.closed = true;
    // Other nodes sweep; a draining node stops (its store may close soon).
    clearInterval(this.sweepTimer);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweepTimer);
    for (const t of this.offerTimers.values()) clearTimeout(t);
    for (const t of this.wrapUpTimers.values()) clearTimeout(t);
    this.offerTimers.clear();
    this.wrapUpTimers.clear();
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    return this.store.withLock('routing', fn);
  }

  private async setTeller(id: string, patch: Partial<TellerRecord>): Promise<TellerRecord> {
    const t = await this.store.updateTeller(id, (t) => ({ ...t, ...patch }));
    this.log.debug({ tellerId: id, state: t.state }, 'teller state');
    this.emit('teller', t);
    return t;
  }

  private async recordOffer(offer: OfferRecord): Promise<void> {
    await this.evidence.append({
      sessionId: offer.sessionId,
      type: 'offer.closed',
      actor: offer.state === 'accepted' || offer.state === 'rejected' ? offer.tellerId : 'system',
      payload: { offerId: offer.id, tellerId: offer.tellerId, state: offer.state, reason: offer.reason ?? null, offeredMs: (offer.closedAt ?? this.now()) - offer.createdAt },
    });
  }

  private async requireSession(id: string): Promise<SessionRecord> {
    const s = await this.store.getSession(id);
    if (!s) throw new RoutingError('not_found', `session ${id} not found`);
    return s;
  }

  private async requireTeller(id: string): Promise<TellerRecord> {
    const t = await this.store.getTeller(id);
    if (!t) throw new RoutingError('not_found', `teller ${id} not found`);
    return t;
  }

  private clearTimer(timers: Map<string, NodeJS.Timeout>, key: string): void {
    const t = timers.get(key);
    if (t) clearTimeout(t);
    timers.delete(key);
  }
}

export function isEligible(t: TellerRecord, s: Pick<SessionRecord, 'businessType' | 'language'>): boolean {
  return t.skills.businessTypes.includes(s.businessType) && t.skills.languages.includes(s.language);
}

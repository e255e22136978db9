/**
 * Contact-centre figures of this node, counted from the router's events as they happen: offers by
 * outcome, calls answered and abandoned, service level, average speed of answer, connection rate;
 * and, read from the shared store when asked, the queues (length and oldest wait per skill).
 *
 * The counters are this node's: in a deployment of several nodes each node counts the calls its
 * router moved (the node that handled the accept, the leave, the decline), so summing over nodes
 * gives the totals (Prometheus does, from each node's /metrics). Each node also adds what it
 * counts to counters in the shared store, which the supervisor board reads (deploymentFigures()),
 * so every node's board shows the whole deployment. The queue figures come from the shared store
 * and are the same on every node (take one node's value or the max, not the sum).
 *
 * Definitions (the usual contact-centre ones):
 * - wait: from the moment the session first entered the queue (queuedAt, kept across offers that
 *   time out or are declined) until a teller accepts it (answered) or the customer leaves (abandoned).
 * - service level = answered within the target / (answered + abandoned after the target).
 *   Customers who left before the target are not held against it (they gave up before the
 *   promise was due); null while the denominator is 0.
 * - average speed of answer = total wait of answered calls / answered calls; null before the first.
 * - connection rate = calls whose media connected / calls answered, where a call counts as
 *   connected once both the customer and the teller have a producer on the server (the
 *   `media.producer` evidence of both sides for that call): both pages got camera and microphone
 *   and negotiated sending them. A call where either side never gets that far (camera refused,
 *   page closed, signaling failure) is answered but not connected. Observed through the evidence
 *   every part writes (observeEvidence), with no hook in signaling. Limit: a producer is created
 *   from the page's RTP parameters, before ICE/DTLS complete; a call whose transport then fails
 *   to connect (UDP and TCP blocked) still counts as connected here. CallMedia's transportState
 *   events say that, but reaching them needs a hook in signaling/calls.ts.
 */
import type { EvidenceEntry } from '../evidence.ts';
import type { OfferRecord, SessionRecord, StateStore } from '../store/types.ts';
import type { QueueRouter } from '../../signaling/router.ts';

/** An offer's outcome: accepted, declined by the teller, withdrawn (teller went away), timeout, canceled. */
export type OfferOutcome = 'accepted' | 'declined' | 'withdrawn' | 'timeout' | 'canceled';
export const OFFER_OUTCOMES: readonly OfferOutcome[] = ['accepted', 'declined', 'withdrawn', 'timeout', 'canceled'];

export interface SkillKey {
  businessType: string;
  language: string;
}

export interface QueueFigures extends SkillKey {
  /** Sessions waiting (queued or being offered). */
  waiting: number;
  /** Seconds the longest-waiting of them has waited; 0 when none waits. */
  oldestWaitS: number;
}

export interface CallCounts {
  answered: number;
  answeredWithinTarget: number;
  abandoned: number;
  /** Of the abandoned, those who waited longer than the target before leaving. */
  abandonedAfterTarget: number;
  /** Sum of the waits of answered calls, seconds. */
  answerWaitTotalS: number;
  /** Answered calls whose media connected on both sides. */
  mediaConnected: number;
}

export interface CallStatsSnapshot extends CallCounts {
  /** Epoch ms the snapshot was taken. */
  at: number;
  serviceLevelTargetS: number;
  /** answeredWithinTarget / (answered + abandonedAfterTarget); null when nothing counts yet. */
  serviceLevel: number | null;
  /** Seconds; null before the first answered call. */
  averageSpeedOfAnswerS: number | null;
  /** mediaConnected / answered; null before the first answered call. */
  connectionRate: number | null;
  offers: Record<OfferOutcome, number>;
  /** The same counts per skill (business type + language). */
  bySkill: Array<SkillKey & CallCounts>;
  /** From the shared store at snapshot time, every skill with someone waiting. */
  queues: QueueFigures[];
}

/** What the metrics registry wants to hear as events happen (optional: the snapshot works alone). */
export interface CallStatsListener {
  offerClosed(outcome: OfferOutcome, skill: SkillKey | undefined): void;
  answered(skill: SkillKey, waitS: number, withinTarget: boolean): void;
  abandoned(skill: SkillKey, waitS: number, afterTarget: boolean): void;
  mediaConnected(skill: SkillKey): void;
}

const emptyCounts = (): CallCounts => ({ answered: 0, answeredWithinTarget: 0, abandoned: 0, abandonedAfterTarget: 0, answerWaitTotalS: 0, mediaConnected: 0 });

/** Calls answered by this node whose media is not yet seen connected are kept at most this many. */
const MAX_PENDING_CONNECTIONS = 10_000;

export class CallStats {
  private readonly total = emptyCounts();
  private readonly skills = new Map<string, SkillKey & CallCounts>();
  private readonly offers: Record<OfferOutcome, number> = { accepted: 0, declined: 0, withdrawn: 0, timeout: 0, canceled: 0 };
  /** Skill of each offer made by this node, until it closes (offerClosed carries no session). */
  private readonly offerSkills = new Map<string, SkillKey>();
  /** Answered calls waiting for both sides' producers: sessionId → skill and sides seen. */
  private readonly connecting = new Map<string, { skill: SkillKey; sides: Set<string> }>();
  private readonly listeners: CallStatsListener[] = [];
  /** Increments of the shared counters not yet acknowledged by the store. */
  private readonly pendingShared = new Set<Promise<void>>();
  private readonly onSharedError?: (err: unknown) => void;
  private readonly now: () => number;
  private readonly onOffer = (offer: OfferRecord, session: SessionRecord) => this.offerSkills.set(offer.id, skillOf(session));
  private readonly onOfferClosed = (offer: OfferRecord) => {
    const skill = this.offerSkills.get(offer.id);
    this.offerSkills.delete(offer.id);
    this.countOffer(outcomeOf(offer), skill);
  };
  private readonly onAccepted = (session: SessionRecord) => this.answered(session);
  private readonly onSession = (session: SessionRecord) => {
    if (session.state === 'abandoned') this.abandoned(session);
    else if (session.state === 'ended' || session.state === 'failed' || session.state === 'expired') this.connecting.delete(session.id);
  };

  constructor(
    private readonly router: QueueRouter,
    private readonly store: StateStore,
    readonly serviceLevelTargetS: number,
    opts: { now?: () => number; onSharedError?: (err: unknown) => void } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.onSharedError = opts.onSharedError;
    router.on('offer', this.onOffer);
    router.on('offerClosed', this.onOfferClosed);
    router.on('accepted', this.onAccepted);
    router.on('session', this.onSession);
  }

  addListener(l: CallStatsListener): void {
    this.listeners.push(l);
  }

  /** Feed every evidence entry the server writes (the ledger's append observer does it). */
  observeEvidence(entry: EvidenceEntry): void {
    if (entry.type !== 'media.producer') return;
    const pending = this.connecting.get(entry.sessionId);
    const participant = entry.payload['participant'];
    if (!pending || (participant !== 'customer' && participant !== 'teller')) return;
    pending.sides.add(participant);
    if (pending.sides.size < 2) return;
    this.connecting.delete(entry.sessionId);
    this.bump(pending.skill, (c) => c.mediaConnected++);
    for (const l of this.listeners) l.mediaConnected(pending.skill);
  }

  /** The figures now. Counters are this node's since it started; queues are read from the store. */
  async snapshot(): Promise<CallStatsSnapshot> {
    const queues = await this.queues();
    const t = this.total;
    const slDenominator = t.answered + t.abandonedAfterTarget;
    return {
      at: this.now(),
      serviceLevelTargetS: this.serviceLevelTargetS,
      ...t,
      serviceLevel: slDenominator === 0 ? null : t.answeredWithinTarget / slDenominator,
      averageSpeedOfAnswerS: t.answered === 0 ? null : t.answerWaitTotalS / t.answered,
      connectionRate: t.answered === 0 ? null : t.mediaConnected / t.answered,
      offers: { ...this.offers },
      bySkill: [...this.skills.values()].map((s) => ({ ...s })),
      queues,
    };
  }

  /** Length and oldest wait of each skill's queue, from the shared store. */
  async queues(): Promise<QueueFigures[]> {
    const now = this.now();
    const ids = await this.store.queuedSessionIds();
    const sessions = await Promise.all(ids.map((id) => this.store.getSession(id)));
    const byKey = new Map<string, QueueFigures>();
    for (const s of sessions) {
      if (!s || (s.state !== 'queued' && s.state !== 'offered')) continue;
      const key = skillKey(s);
      const q = byKey.get(key) ?? { businessType: s.businessType, language: s.language, waiting: 0, oldestWaitS: 0 };
      q.waiting++;
      q.oldestWaitS = Math.max(q.oldestWaitS, Math.max(0, now - (s.queuedAt ?? now)) / 1000);
      byKey.set(key, q);
    }
    return [...byKey.values()].sort((a, b) => skillKey(a).localeCompare(skillKey(b)));
  }

  close(): void {
    this.router.off('offer', this.onOffer);
    this.router.off('offerClosed', this.onOfferClosed);
    this.router.off('accepted', this.onAccepted);
    this.router.off('session', this.onSession);
  }

  private countOffer(outcome: OfferOutcome, skill: SkillKey | undefined): void {
    this.offers[outcome]++;
    for (const l of this.listeners) l.offerClosed(outcome, skill);
  }

  private answered(session: SessionRecord): void {
    const skill = skillOf(session);
    // The accept closes the offer without an offerClosed event: count it here.
    if (session.answeredAt === undefined) return;
    const waitS = Math.max(0, session.answeredAt - (session.queuedAt ?? session.answeredAt)) / 1000;
    const within = waitS <= this.serviceLevelTargetS;
    this.bump(skill, (c) => {
      c.answered++;
      c.answerWaitTotalS += waitS;
      if (within) c.answeredWithinTarget++;
    });
    this.countOffer('accepted', skill);
    for (const l of this.listeners) l.answered(skill, waitS, within);
    if (this.connecting.size >= MAX_PENDING_CONNECTIONS) this.connecting.delete(this.connecting.keys().next().value!);
    this.connecting.set(session.id, { skill, sides: new Set() });
  }

  private abandoned(session: SessionRecord): void {
    // A customer who never joined the queue (left before consenting) did not abandon a queue.
    if (session.queuedAt === undefined) return;
    const skill = skillOf(session);
    const waitS = Math.max(0, (session.endedAt ?? this.now()) - session.queuedAt) / 1000;
    const after = waitS > this.serviceLevelTargetS;
    this.bump(skill, (c) => {
      c.abandoned++;
      if (after) c.abandonedAfterTarget++;
    });
    for (const l of this.listeners) l.abandoned(skill, waitS, after);
  }

  private bump(skill: SkillKey, fn: (c: CallCounts) => void): void {
    const key = skillKey(skill);
    let s = this.skills.get(key);
    if (!s) this.skills.set(key, (s = { ...skill, ...emptyCounts() }));
    fn(s);
    fn(this.total);
    // The deployment's totals: every node adds what it counted (the board shows these).
    const delta = emptyCounts();
    fn(delta);
    const nonZero = Object.fromEntries(Object.entries(delta).filter(([, v]) => v !== 0));
    const added = this.store.addToCounters(SHARED_COUNTERS, nonZero).catch((err: unknown) => {
      // A lost increment (the store away) skews the board's figures a little; it never fails a call.
      this.onSharedError?.(err);
    });
    this.pendingShared.add(added);
    void added.finally(() => this.pendingShared.delete(added));
  }

  /**
   * The deployment's figures, every node's counts added up (the supervisor board). With one node
   * they equal snapshot()'s. Counted since the shared store began (Redis: since its data began).
   */
  async deploymentFigures(): Promise<{ serviceLevel: number | null; answered: number; abandoned: number; connectionRate: number | null; averageSpeedOfAnswerS: number | null }> {
    await Promise.all(this.pendingShared);
    const raw = await this.store.readCounters(SHARED_COUNTERS);
    const n = (k: keyof CallCounts) => (Number.isFinite(raw[k]) ? raw[k]! : 0);
    const answered = n('answered');
    const slDenominator = answered + n('abandonedAfterTarget');
    return {
      answered,
      abandoned: n('abandoned'),
      serviceLevel: slDenominator === 0 ? null : n('answeredWithinTarget') / slDenominator,
      averageSpeedOfAnswerS: answered === 0 ? null : n('answerWaitTotalS') / answered,
      connectionRate: answered === 0 ? null : n('mediaConnected') / answered,
    };
  }
}

/** The store's counter set every node adds its call counts to. */
const SHARED_COUNTERS = 'callstats';

function skillOf(s: SessionRecord): SkillKey {
  return { businessType: s.businessType, language: s.language };
}

function skillKey(s: SkillKey): string {
  return `${s.businessType}/${s.language}`;
}

/** offer.state + reason → outcome ('rejected' is a decline, or the teller going away while offered). */
export function outcomeOf(offer: OfferRecord): OfferOutcome {
  switch (offer.state) {
    case 'accepted':
      return 'accepted';
    case 'rejected':
      return offer.reason === 'declined' ? 'declined' : 'withdrawn';
    case 'timeout':
      return 'timeout';
    default:
      return 'canceled';
  }
}

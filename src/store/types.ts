import type { BusinessType, Decision, DecisionReason, Language, OfferState, SessionState, TellerState } from '../../signaling/protocol.ts';
import type { EvidenceSummary, RecordBundle } from '../ledger/record-claims.ts';
import type { StaffSkills } from '../auth/staff-directory.ts';

/**
 * Shared state behind one interface: sessions, the queue, teller presence and offers.
 * `memory` (one node) is the default; a Redis implementation (several nodes) passes the same
 * conformance suite. Every read-modify-write goes through `update*` so an implementation can make
 * it atomic (Redis: WATCH/MULTI or Lua). The updater may throw to abort without writing.
 */

export interface SessionRecord {
  id: string;
  businessType: BusinessType;
  language: Language;
  /** 0 (normal) .. 9 (most urgent), set by the bank's system. */
  priority: number;
  /** The bank's customer reference. Evidence carries it; logs mask it. */
  customerRef: string;
  /** The amount the bank's system declared for the business (decides dual control above thresholds). */
  amount?: { value: string; currency: string };
  state: SessionState;
  createdAt: number;
  /** When the session first entered the queue; kept across offer timeouts so it keeps its place. */
  queuedAt?: number;
  tokenHash: string;
  tokenExpiresAt: number;
  tokenUsed: boolean;
  resumeTokenHash?: string;
  offerId?: string;
  tellerId?: string;
  callId?: string;
  /** The node holding the call's media (its mediasoup router); both sides' media requests go there. */
  mediaNode?: string;
  /** Tellers who declined this session recently (epoch ms of the decline), skipped when routing. */
  declinedBy: Record<string, number>;
  answeredAt?: number;
  endedAt?: number;
  endReason?: string;
  /** The API key id that created the session. */
  createdBy: string;
  /** Set when the teller decided: the verification record as issued (JWS, entry, proof, checkpoint). */
  decision?: SessionDecision;
  /** The registered ID photo's face, once the bank's system attached it (the photo is in the blob store). */
  reference?: SessionReference;
  /** The customer's post-call rating (once per session; the ledger's `customer.rating` entry is the evidence). */
  rating?: SessionRating;
}

export interface SessionRating {
  /** 1 (poor) .. 5 (excellent). */
  score: number;
  /** Customer text: kept for the teller's supervisor and the evidence, never logged. */
  comment?: string;
  at: number;
  /** Ledger index of the `customer.rating` entry. */
  entryIndex: number;
}

export interface SessionReference {
  /** SHA-256 of the uploaded photo: its name in the blob store and in the evidence. */
  sha256: string;
  /** The 128-d face descriptor (plain numbers, so every store can keep it as JSON). */
  descriptor: number[];
  detectionScore: number;
  attachedAt: number;
}

export interface SessionDecision {
  decision: Decision;
  reason: DecisionReason;
  tellerId: string;
  tellerScope: string;
  decidedAt: number;
  /** The teller's note (evidence keeps it; the supervisor sees it; the record does not carry it). */
  note?: string;
  /** Ledger index of the teller's `decision.made` entry. */
  entryIndex: number;
  /** A supervisor must co-sign before the record is issued. */
  dualControl: boolean;
  /**
   * `finishing`: the call is ending and its recording being stored; `awaiting_cosign`: waiting for a
   * supervisor; `issued`: the record is signed (final).
   */
  status: 'finishing' | 'awaiting_cosign' | 'issued';
  /** What the record will carry (identity summary, one-time code, recording once stored). */
  evidence: EvidenceSummary;
  cosign?: { supervisorId: string; verdict: 'cosign' | 'refuse'; at: number; entryIndex: number; note?: string };
  recordId?: string;
  record?: RecordBundle;
}

export interface TellerRecord {
  id: string;
  displayName: string;
  skills: StaffSkills;
  state: TellerState;
  /** Since when the teller has been without a call: longest idle is offered first. */
  idleSince: number;
  missedOffers: number;
  offerId?: string;
  sessionId?: string;
  wrapUpUntil?: number;
}

export interface OfferRecord {
  id: string;
  sessionId: string;
  tellerId: string;
  state: OfferState;
  createdAt: number;
  expiresAt: number;
  closedAt?: number;
  reason?: string;
}

export interface StateStore {
  readonly kind: string;

  createSession(s: SessionRecord): Promise<void>;
  getSession(id: string): Promise<SessionRecord | undefined>;
  /** Looks a session up by the hash of its join token or of its resume token. */
  findSessionByTokenHash(hash: string): Promise<SessionRecord | undefined>;
  updateSession(id: string, update: (s: SessionRecord) => SessionRecord): Promise<SessionRecord>;

  /**
   * The queue is a set of session ids; order is decided by the router from the sessions' fields,
   * so queuedSessionIds() returns them in no particular order. enqueue is idempotent (a session is
   * in the queue at most once); dequeue answers true only to the one call that removed the id, so
   * of two nodes dequeuing the same session exactly one sees true.
   */
  enqueue(sessionId: string): Promise<void>;
  dequeue(sessionId: string): Promise<boolean>;
  queuedSessionIds(): Promise<string[]>;

  putTeller(t: TellerRecord): Promise<void>;
  getTeller(id: string): Promise<TellerRecord | undefined>;
  updateTeller(id: string, update: (t: TellerRecord) => TellerRecord): Promise<TellerRecord>;
  listTellers(): Promise<TellerRecord[]>;

  createOffer(o: OfferRecord): Promise<void>;
  getOffer(id: string): Promise<OfferRecord | undefined>;
  updateOffer(id: string, update: (o: OfferRecord) => OfferRecord): Promise<OfferRecord>;

  /**
   * Named sets of session ids that several nodes must see alike (e.g. `cosign`: decisions waiting for
   * a supervisor). Adding is idempotent; removing answers true only to the call that removed it.
   */
  addToIndex(name: string, sessionId: string): Promise<void>;
  removeFromIndex(name: string, sessionId: string): Promise<boolean>;
  indexMembers(name: string): Promise<string[]>;

  /**
   * Named sets of counters the whole deployment adds to (e.g. `callstats`: calls answered and
   * abandoned by every node, for the supervisor board). Each delta is added atomically; a field
   * never added to reads as absent. Deltas are finite numbers (fractions allowed: waits in seconds).
   * Not idempotent: a caller must not resend an increment whose outcome is unknown.
   */
  addToCounters(name: string, deltas: Record<string, number>): Promise<void>;
  readCounters(name: string): Promise<Record<string, number>>;

  /**
   * Runs fn while holding a named lock (one routing pass at a time across all nodes). Not
   * re-entrant. The lock is released when fn settles, also when it throws. A store may bound the
   * wait: it then throws LockTimeoutError without running fn.
   */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;

  close(): Promise<void>;
}

/*
 * Records are plain JSON data: a field set to undefined reads back as absent, and -0 reads back
 * as 0 from a store that serializes (Redis). Every store copies records in and out, so a caller
 * never holds a reference into stored state.
 */

export class NotFoundError extends Error {
  constructor(readonly what: string, readonly id: string) {
    super(`${what} ${id} not found`);
    this.name = 'NotFoundError';
  }
}

/** The shared store could not be reached (or did not answer) within its bound. */
export class StoreUnavailableError extends Error {
  constructor(
    message: string,
    /** True when a write may or may not have been applied (the connection dropped after sending it). */
    readonly outcomeUnknown = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** withLock could not get the lock within its bound: another holder kept it (or a node died holding it). */
export class LockTimeoutError extends Error {
  constructor(readonly lock: string, readonly waitedMs: number) {
    super(`lock ${lock} not acquired within ${waitedMs} ms`);
    this.name = 'LockTimeoutError';
  }
}

/** A stored value is not a record of the expected shape (written by something else, or corrupted). */
export class StoreDataError extends Error {
  constructor(readonly what: string, readonly id: string, detail: string) {
    super(`stored ${what} ${id} is malformed: ${detail}`);
    this.name = 'StoreDataError';
  }
}

/** A read-modify-write kept losing to other writers of the same record; nothing was written. */
export class StoreConflictError extends Error {
  constructor(readonly what: string, readonly id: string, readonly rounds: number) {
    super(`${what} ${id}: gave up after ${rounds} conflicting writes`);
    this.name = 'StoreConflictError';
  }
}

/** Counter deltas are finite numbers under plain field names; anything else is a caller's bug. */
export function checkDeltas(deltas: Record<string, number>): void {
  for (const [field, delta] of Object.entries(deltas)) {
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(field)) throw new RangeError(`counter field ${JSON.stringify(field).slice(0, 80)} is not a plain name`);
    if (typeof delta !== 'number' || !Number.isFinite(delta)) throw new RangeError(`counter ${field}: the delta must be a finite number`);
  }
}

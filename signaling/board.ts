import type { Logger } from '../src/logger.ts';
import type { SessionRecord, StateStore } from '../src/store/types.ts';
import type { BoardSnapshot } from './protocol.ts';
import { RATINGS_INDEX } from './ratings.ts';
import type { QueueRouter } from './router.ts';

/**
 * The figures the call statistics (src/operations/call-stats.ts `CallStats.snapshot()`) give the
 * board. Declared here by shape so the board does not depend on how that part is built or wired.
 */
export interface CallStatsSource {
  snapshot(): Promise<{ serviceLevel: number | null; answered: number; abandoned: number; connectionRate: number | null }>;
}

export interface BoardDeps {
  store: StateStore;
  router: QueueRouter;
  /** Absent: the board shows service level, abandonment and connection rate as not available. */
  callStats?: CallStatsSource;
  log: Logger;
  now?: () => number;
}

/** At most one push per this interval, however many router events arrive. */
export const BOARD_MIN_INTERVAL_MS = 1000;
/**
 * A push at least this often while supervisors watch: another node's router moves queues and
 * tellers in the shared store without this node's router emitting anything.
 */
export const BOARD_REFRESH_MS = 5000;

type Rated = { tellerId: string; score: number };

/**
 * The supervisor board's snapshot: queues by skill, tellers with their state, call duration and
 * satisfaction, the call statistics, and overall satisfaction. Built from the shared store (so
 * every node shows the same floor) plus, when present, the call statistics of this node.
 */
export class SupervisorBoard {
  private readonly now: () => number;
  /** Ratings never change once given: each rated session is read from the store once. */
  private readonly ratings = new Map<string, Rated>();
  private readonly subscribers = new Set<(b: BoardSnapshot) => void>();
  private timer: NodeJS.Timeout | undefined;
  private refresh: NodeJS.Timeout | undefined;
  private lastPushAt = -Infinity;
  private pushing = false;
  private again = false;
  private readonly onRouterEvent = () => this.changed();

  constructor(private deps: BoardDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** The call statistics, when the part that asks for the board first had none to give. */
  useCallStats(source: CallStatsSource): void {
    this.deps = { ...this.deps, callStats: source };
  }

  async snapshot(): Promise<BoardSnapshot> {
    const { store } = this.deps;
    const at = this.now();
    const [queued, tellers, stats] = await Promise.all([
      store.queuedSessionIds().then((ids) => Promise.all(ids.map((id) => store.getSession(id)))),
      store.listTellers(),
      this.callStats(),
    ]);
    const satisfaction = await this.satisfaction();

    const queues = new Map<string, BoardSnapshot['queues'][number]>();
    for (const s of queued) {
      if (!s || (s.state !== 'queued' && s.state !== 'offered')) continue;
      const key = `${s.businessType}/${s.language}`;
      const q = queues.get(key) ?? { businessType: s.businessType, language: s.language, length: 0, offered: 0, oldestWaitS: 0 };
      q.length++;
      if (s.state === 'offered') q.offered++;
      q.oldestWaitS = Math.max(q.oldestWaitS, Math.floor(Math.max(0, at - (s.queuedAt ?? s.createdAt)) / 1000));
      queues.set(key, q);
    }

    // A busy teller's call started when the session was answered.
    const inCall = await Promise.all(
      tellers.map((t) => (t.state === 'busy' && t.sessionId ? store.getSession(t.sessionId) : Promise.resolve(undefined))),
    );
    return {
      at,
      queues: [...queues.values()].sort((a, b) => `${a.businessType}/${a.language}`.localeCompare(`${b.businessType}/${b.language}`)),
      tellers: tellers
        .map((t, i) => ({
          tellerId: t.id,
          displayName: t.displayName,
          state: t.state,
          callDurationS: callDurationS(inCall[i], at),
          satisfaction: satisfaction.byTeller.get(t.id) ?? { count: 0, average: null },
        }))
        .sort((a, b) => a.displayName.localeCompare(b.displayName) || a.tellerId.localeCompare(b.tellerId)),
      callStats: stats,
      satisfaction: satisfaction.overall,
    };
  }

  /** Receives a snapshot now and on every change until the returned function is called. */
  subscribe(fn: (b: BoardSnapshot) => void): () => void {
    if (this.subscribers.size === 0) this.start();
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
      if (this.subscribers.size === 0) this.stop();
    };
  }

  /** Something the board shows changed: push, at most once per BOARD_MIN_INTERVAL_MS. */
  changed(): void {
    if (this.subscribers.size === 0 || this.timer) return;
    if (this.pushing) {
      this.again = true;
      return;
    }
    const wait = Math.max(0, this.lastPushAt + BOARD_MIN_INTERVAL_MS - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.push();
    }, wait);
    this.timer.unref();
  }

  private async push(): Promise<void> {
    this.pushing = true;
    this.lastPushAt = this.now();
    try {
      const board = await this.snapshot();
      for (const fn of this.subscribers) fn(board);
    } catch (err) {
      this.deps.log.error({ err }, 'board snapshot failed');
    } finally {
      this.pushing = false;
      if (this.again) {
        this.again = false;
        this.changed();
      }
    }
  }

  private start(): void {
    const { router } = this.deps;
    router.on('queueChanged', this.onRouterEvent);
    router.on('teller', this.onRouterEvent);
    router.on('session', this.onRouterEvent);
    router.on('offerClosed', this.onRouterEvent);
    this.refresh = setInterval(this.onRouterEvent, BOARD_REFRESH_MS);
    this.refresh.unref();
  }

  private stop(): void {
    const { router } = this.deps;
    router.off('queueChanged', this.onRouterEvent);
    router.off('teller', this.onRouterEvent);
    router.off('session', this.onRouterEvent);
    router.off('offerClosed', this.onRouterEvent);
    clearInterval(this.refresh);
    clearTimeout(this.timer);
    this.refresh = undefined;
    this.timer = undefined;
    this.again = false;
  }

  private async callStats(): Promise<BoardSnapshot['callStats']> {
    if (!this.deps.callStats) return null;
    const s = await this.deps.callStats.snapshot();
    const ended = s.answered + s.abandoned;
    return {
      serviceLevel: s.serviceLevel,
      abandonmentRate: ended === 0 ? null : s.abandoned / ended,
      answered: s.answered,
      connectionRate: s.connectionRate,
    };
  }

  /** Average score per teller and overall, from the sessions in the ratings index. */
  private async satisfaction(): Promise<{ byTeller: Map<string, BoardSnapshot['satisfaction']>; overall: BoardSnapshot['satisfaction'] }> {
    const { store, log } = this.deps;
    const ids = await store.indexMembers(RATINGS_INDEX);
    const unread = ids.filter((id) => !this.ratings.has(id));
    const sessions = await Promise.all(unread.map((id) => store.getSession(id)));
    for (const [i, s] of sessions.entries()) {
      if (s?.rating && s.tellerId) this.ratings.set(unread[i]!, { tellerId: s.tellerId, score: s.rating.score });
      else log.warn({ sessionId: unread[i] }, 'ratings index names a session without a rating');
    }
    const sums = new Map<string, { sum: number; count: number }>();
    let sum = 0;
    let count = 0;
    for (const { tellerId, score } of this.ratings.values()) {
      const t = sums.get(tellerId) ?? { sum: 0, count: 0 };
      t.sum += score;
      t.count++;
      sums.set(tellerId, t);
      sum += score;
      count++;
    }
    const byTeller = new Map([...sums].map(([id, t]) => [id, { count: t.count, average: round2(t.sum / t.count) }]));
    return { byTeller, overall: { count, average: count === 0 ? null : round2(sum / count) } };
  }
}

function callDurationS(s: SessionRecord | undefined, at: number): number | null {
  if (!s?.answeredAt || (s.state !== 'in_call' && s.state !== 'reconnecting' && s.state !== 'decided')) return null;
  return Math.floor(Math.max(0, at - s.answeredAt) / 1000);
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * One board per router (per node), shared by the supervisor namespace (which pushes it) and the
 * customer namespace (whose ratings change it), without the server's composition knowing.
 */
const boards = new WeakMap<QueueRouter, SupervisorBoard>();
export function boardFor(deps: BoardDeps): SupervisorBoard {
  let board = boards.get(deps.router);
  if (!board) boards.set(deps.router, (board = new SupervisorBoard(deps)));
  else if (deps.callStats) board.useCallStats(deps.callStats);
  return board;
}

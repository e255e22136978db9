import { checkDeltas, NotFoundError, type OfferRecord, type SessionRecord, type StateStore, type TellerRecord } from './types.ts';

/**
 * One-node store. Records are copied in and out (structuredClone) so callers can never mutate
 * stored state behind the store's back, which keeps it honest against the Redis implementation.
 */
export class MemoryStore implements StateStore {
  readonly kind = 'memory';
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly tokenIndex = new Map<string, string>();
  private readonly queue = new Set<string>();
  private readonly tellers = new Map<string, TellerRecord>();
  private readonly offers = new Map<string, OfferRecord>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly indexes = new Map<string, Set<string>>();
  private readonly counters = new Map<string, Map<string, number>>();

  async createSession(s: SessionRecord): Promise<void> {
    if (this.sessions.has(s.id)) throw new Error(`session ${s.id} exists`);
    this.sessions.set(s.id, structuredClone(s));
    this.indexTokens(s);
  }

  async getSession(id: string): Promise<SessionRecord | undefined> {
    const s = this.sessions.get(id);
    return s && structuredClone(s);
  }

  async findSessionByTokenHash(hash: string): Promise<SessionRecord | undefined> {
    const id = this.tokenIndex.get(hash);
    return id === undefined ? undefined : this.getSession(id);
  }

  async updateSession(id: string, update: (s: SessionRecord) => SessionRecord): Promise<SessionRecord> {
    const current = this.sessions.get(id);
    if (!current) throw new NotFoundError('session', id);
    const next = update(structuredClone(current));
    this.sessions.set(id, structuredClone(next));
    this.indexTokens(next);
    return structuredClone(next);
  }

  async enqueue(sessionId: string): Promise<void> {
    this.queue.add(sessionId);
  }

  async dequeue(sessionId: string): Promise<boolean> {
    return this.queue.delete(sessionId);
  }

  async queuedSessionIds(): Promise<string[]> {
    return [...this.queue];
  }

  async addToIndex(name: string, sessionId: string): Promise<void> {
    let index = this.indexes.get(name);
    if (!index) this.indexes.set(name, (index = new Set()));
    index.add(sessionId);
  }

  async removeFromIndex(name: string, sessionId: string): Promise<boolean> {
    return this.indexes.get(name)?.delete(sessionId) ?? false;
  }

  async indexMembers(name: string): Promise<string[]> {
    return [...(this.indexes.get(name) ?? [])];
  }

  async addToCounters(name: string, deltas: Record<string, number>): Promise<void> {
    checkDeltas(deltas);
    let counters = this.counters.get(name);
    if (!counters) this.counters.set(name, (counters = new Map()));
    for (const [field, delta] of Object.entries(deltas)) counters.set(field, (counters.get(field) ?? 0) + delta);
  }

  async readCounters(name: string): Promise<Record<string, number>> {
    return Object.fromEntries(this.counters.get(name) ?? []);
  }

  async putTeller(t: TellerRecord): Promise<void> {
    this.tellers.set(t.id, structuredClone(t));
  }

  async getTeller(id: string): Promise<TellerRecord | undefined> {
    const t = this.tellers.get(id);
    return t && structuredClone(t);
  }

  async updateTeller(id: string, update: (t: TellerRecord) => TellerRecord): Promise<TellerRecord> {
    const current = this.tellers.get(id);
    if (!current) throw new NotFoundError('teller', id);
    const next = update(structuredClone(current));
    this.tellers.set(id, structuredClone(next));
    return structuredClone(next);
  }

  async listTellers(): Promise<TellerRecord[]> {
    return [...this.tellers.values()].map((t) => structuredClone(t));
  }

  async createOffer(o: OfferRecord): Promise<void> {
    this.offers.set(o.id, structuredClone(o));
  }

  async getOffer(id: string): Promise<OfferRecord | undefined> {
    const o = this.offers.get(id);
    return o && structuredClone(o);
  }

  async updateOffer(id: string, update: (o: OfferRecord) => OfferRecord): Promise<OfferRecord> {
    const current = this.offers.get(id);
    if (!current) throw new NotFoundError('offer', id);
    const next = update(structuredClone(current));
    this.offers.set(id, structuredClone(next));
    return structuredClone(next);
  }

  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    }
  }

  async close(): Promise<void> {}

  private indexTokens(s: SessionRecord): void {
    this.tokenIndex.set(s.tokenHash, s.id);
    if (s.resumeTokenHash) this.tokenIndex.set(s.resumeTokenHash, s.id);
  }
}

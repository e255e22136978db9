import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';
import { GuardedRedis, sleep } from './guarded-redis.ts';
import { LOCK_SCRIPTS, RedisLocks, type RedisLockOptions } from './redis-lock.ts';
import { parseRecord, type RecordKind, type RecordOf } from './schemas.ts';
import {
  checkDeltas,
  NotFoundError,
  StoreConflictError,
  StoreDataError,
  StoreUnavailableError,
  type OfferRecord,
  type SessionRecord,
  type StateStore,
  type TellerRecord,
} from './types.ts';

/**
 * Shared state in Redis, for several nodes. src/store/README.md has the key layout, the
 * persistence Redis must have, and what happens while Redis is away.
 *
 * Every record kind lives in two hashes: `<kind>s` (id → JSON) and `<kind>s:w` (id → the id of
 * the write that produced it). A read-modify-write reads both, runs the updater, then a script
 * writes only if the write id is still the one read (compare-and-set, retried on conflict). The
 * write id also makes a write that was sent just before a dropped connection safe to send again:
 * the script answers "done" when it finds its own write id.
 *
 * The connection (what waits, what is re-sent, the bounds, the logging) is guarded-redis.ts's.
 */

export { describeUrl } from './guarded-redis.ts';

export interface RedisStoreOptions {
  url: string;
  /** Prefix of every key, so deployments (and tests) can share one Redis. */
  keyPrefix: string;
  log: Logger;
  /** Bound on one store operation, reconnect waits included, before StoreUnavailableError. */
  opTimeoutMs?: number;
  /** Bound on the first connection at start. */
  connectTimeoutMs?: number;
  lock?: Partial<RedisLockOptions>;
}

const LOCK_DEFAULTS: RedisLockOptions = { ttlMs: 6000, waitMs: 15_000, retryMs: 5 };
/** Conflicting writers on one record retry; past this many rounds something is badly wrong. */
const MAX_CAS_ROUNDS = 500;

// KEYS: data hash, write-id hash, token index. ARGV: id, expected write id, new JSON, new write id, token hashes…
const CAS = `
local w = redis.call('HGET', KEYS[2], ARGV[1])
if not w then return -1 end
if w ~= ARGV[2] then
  if w == ARGV[4] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
for i = 5, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[1]) end
return 1`;

// KEYS as CAS. ARGV: id, JSON, write id, token hashes… 0 when the id exists (and is not this very write).
const CREATE = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[3] then return 1 end
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for i = 4, #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[1]) end
return 1`;

// KEYS: data hash, write-id hash, (set of ids). ARGV: id, JSON, write id.
const PUT = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1`;

// KEYS: data hash, write-id hash. ARGV: id. Both values, read together.
const READ_VERSIONED = `return {redis.call('HGET', KEYS[1], ARGV[1]) or '', redis.call('HGET', KEYS[2], ARGV[1]) or ''}`;

type Scripts = {
  vtCas(data: string, writes: string, tokens: string, id: string, expected: string, json: string, wid: string, ...tokenHashes: string[]): Promise<number>;
  vtCreate(data: string, writes: string, tokens: string, id: string, json: string, wid: string, ...tokenHashes: string[]): Promise<number>;
  vtPut(data: string, writes: string, id: string, json: string, wid: string): Promise<number>;
  vtReadVersioned(data: string, writes: string, id: string): Promise<[string, string]>;
  vtLockAcquire(key: string, token: string, ttlMs: number): Promise<number>;
  vtLockRelease(key: string, token: string): Promise<number>;
  vtLockExtend(key: string, token: string, ttlMs: number): Promise<number>;
};

export class RedisStore implements StateStore {
  readonly kind = 'redis';
  private readonly conn: GuardedRedis;
  private readonly redis: Redis & Scripts;
  private readonly locks: RedisLocks;
  private readonly log: Logger;
  private readonly p: string;

  /** Connects and checks Redis; rejects with StoreUnavailableError when it cannot reach it. */
  static async open(opts: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(opts);
    await store.conn.connect();
    await store.checkServer(store.conn.where);
    return store;
  }

  private constructor(opts: RedisStoreOptions) {
    this.p = opts.keyPrefix;
    this.log = opts.log;
    this.conn = new GuardedRedis(opts, {
      prefix: '',
      closedMessage: 'the store is closed',
      unavailable: (message, outcomeUnknown, options) => new StoreUnavailableError(message, outcomeUnknown, options),
    });
    const redis = this.conn.client;
    redis.defineCommand('vtCas', { numberOfKeys: 3, lua: CAS });
    redis.defineCommand('vtCreate', { numberOfKeys: 3, lua: CREATE });
    redis.defineCommand('vtPut', { numberOfKeys: 2, lua: PUT });
    redis.defineCommand('vtReadVersioned', { numberOfKeys: 2, lua: READ_VERSIONED });
    this.redis = redis as Redis & Scripts;
    redis.defineCommand('vtLockAcquire', { numberOfKeys: 1, lua: LOCK_SCRIPTS.acquire });
    redis.defineCommand('vtLockRelease', { numberOfKeys: 1, lua: LOCK_SCRIPTS.release });
    redis.defineCommand('vtLockExtend', { numberOfKeys: 1, lua: LOCK_SCRIPTS.extend });
    // All three scripts check the token, so sending one again after a dropped connection is safe.
    this.locks = new RedisLocks(
      {
        acquire: async (key, token, ttl) => (await this.run('lock acquire', true, () => this.redis.vtLockAcquire(key, token, ttl))) === 1,
        release: async (key, token) => void (await this.run('lock release', true, () => this.redis.vtLockRelease(key, token))),
        extend: async (key, token, ttl) => (await this.run('lock renewal', true, () => this.redis.vtLockExtend(key, token, ttl))) === 1,
      },
      (name) => `${this.p}lock:${name}`,
      { ...LOCK_DEFAULTS, ...opts.lock },
      opts.log,
    );
  }

  /** Warns about settings under which Redis can lose the shared state (README: operations). */
  private async checkServer(where: string): Promise<void> {
    const info = await this.run('info', true, () => this.redis.info());
    const field = (name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();
    const aof = field('aof_enabled');
    const policy = field('maxmemory_policy');
    const version = field('redis_version');
    this.log.info({ redis: where, version, aof: aof === '1', maxmemoryPolicy: policy, keyPrefix: this.p }, 'state store: redis');
    if (aof !== '1') this.log.warn({ redis: where }, 'Redis runs without AOF (appendonly no): a Redis restart loses every session and the queue');
    if (policy && policy !== 'noeviction') this.log.warn({ redis: where, policy }, 'Redis may evict keys (maxmemory-policy is not noeviction): sessions can vanish under memory pressure');
  }

  // -------------------------------------------------------------------------------------------
  // Sessions

  async createSession(s: SessionRecord): Promise<void> {
    const json = JSON.stringify(s);
    const wid = randomUUID();
    const done = await this.run('createSession', true, () =>
      this.redis.vtCreate(this.key('sessions'), this.key('sessions:w'), this.key('tokens'), s.id, json, wid, ...tokenHashes(s)),
    );
    if (done !== 1) throw new Error(`session ${s.id} exists`);
  }

  getSession(id: string): Promise<SessionRecord | undefined> {
    return this.read('session', id);
  }

  async findSessionByTokenHash(hash: string): Promise<SessionRecord | undefined> {
    const id = await this.run('findSessionByTokenHash', true, () => this.redis.hget(this.key('tokens'), hash));
    return id === null ? undefined : this.getSession(id);
  }

  updateSession(id: string, update: (s: SessionRecord) => SessionRecord): Promise<SessionRecord> {
    return this.update('session', id, update);
  }

  // -------------------------------------------------------------------------------------------
  // Queue

  async enqueue(sessionId: string): Promise<void> {
    await this.run('enqueue', true, () => this.redis.sadd(this.key('queue'), sessionId));
  }

  async dequeue(sessionId: string): Promise<boolean> {
    // Not idempotent: sent twice, the second answer would be "was not there" although the first
    // removed it. After a dropped connection the caller gets StoreUnavailableError(outcomeUnknown).
    return (await this.run('dequeue', false, () => this.redis.srem(this.key('queue'), sessionId))) === 1;
  }

  queuedSessionIds(): Promise<string[]> {
    return this.run('queuedSessionIds', true, () => this.redis.smembers(this.key('queue')));
  }

  // -------------------------------------------------------------------------------------------
  // Named indexes (sets of session ids), with the queue's semantics

  async addToIndex(name: string, sessionId: string): Promise<void> {
    await this.run('addToIndex', true, () => this.redis.sadd(this.key(`index:${name}`), sessionId));
  }

  async removeFromIndex(name: string, sessionId: string): Promise<boolean> {
    return (await this.run('removeFromIndex', false, () => this.redis.srem(this.key(`index:${name}`), sessionId))) === 1;
  }

  indexMembers(name: string): Promise<string[]> {
    return this.run('indexMembers', true, () => this.redis.smembers(this.key(`index:${name}`)));
  }

  // -------------------------------------------------------------------------------------------
  // Counters (one hash per name; HINCRBYFLOAT in one MULTI, so a set of deltas lands whole)

  async addToCounters(name: string, deltas: Record<string, number>): Promise<void> {
    checkDeltas(deltas);
    const fields = Object.entries(deltas);
    if (fields.length === 0) return;
    // Not resendable: a retried increment would count twice.
    await this.run('addToCounters', false, async () => {
      const multi = this.redis.multi();
      for (const [field, delta] of fields) multi.hincrbyfloat(this.key(`counters:${name}`), field, String(delta));
      const results = await multi.exec();
      const failed = results?.find(([err]) => err);
      if (!results || failed) throw new StoreDataError('counters', name, failed?.[0]?.message ?? 'transaction aborted');
    });
  }

  async readCounters(name: string): Promise<Record<string, number>> {
    const raw = await this.run('readCounters', true, () => this.redis.hgetall(this.key(`counters:${name}`)));
    const out: Record<string, number> = {};
    for (const [field, text] of Object.entries(raw)) {
      const value = Number(text);
      // Stored values are outside input: a field that is not a number is reported, not summed.
      if (!Number.isFinite(value)) throw new StoreDataError('counters', name, `${field} is not a number`);
      out[field] = value;
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Tellers and offers

  async putTeller(t: TellerRecord): Promise<void> {
    await this.put('teller', t);
  }

  getTeller(id: string): Promise<TellerRecord | undefined> {
    return this.read('teller', id);
  }

  updateTeller(id: string, update: (t: TellerRecord) => TellerRecord): Promise<TellerRecord> {
    return this.update('teller', id, update);
  }

  async listTellers(): Promise<TellerRecord[]> {
    const all = await this.run('listTellers', true, () => this.redis.hgetall(this.key('tellers')));
    return Object.entries(all).map(([id, raw]) => parseRecord('teller', id, raw));
  }

  async createOffer(o: OfferRecord): Promise<void> {
    await this.put('offer', o);
  }

  getOffer(id: string): Promise<OfferRecord | undefined> {
    return this.read('offer', id);
  }

  updateOffer(id: string, update: (o: OfferRecord) => OfferRecord): Promise<OfferRecord> {
    return this.update('offer', id, update);
  }

  // -------------------------------------------------------------------------------------------

  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.withLock(name, fn);
  }

  close(): Promise<void> {
    return this.conn.close();
  }

  // -------------------------------------------------------------------------------------------

  private key(name: string): string {
    return `${this.p}${name}`;
  }

  private hashes(kind: RecordKind): [data: string, writes: string] {
    return [this.key(`${kind}s`), this.key(`${kind}s:w`)];
  }

  private async read<K extends RecordKind>(kind: K, id: string): Promise<RecordOf<K> | undefined> {
    const raw = await this.run(`get ${kind}`, true, () => this.redis.hget(this.key(`${kind}s`), id));
    return raw === null ? undefined : parseRecord(kind, id, raw);
  }

  private async put(kind: 'teller' | 'offer', record: TellerRecord | OfferRecord): Promise<void> {
    const [data, writes] = this.hashes(kind);
    const json = JSON.stringify(record);
    const wid = randomUUID();
    await this.run(`put ${kind}`, true, () => this.redis.vtPut(data, writes, record.id, json, wid));
  }

  /**
   * Optimistic read-modify-write: read the record and its write id, run the updater, write if the
   * write id is unchanged; otherwise someone wrote in between, so read again and rerun the updater.
   */
  private async update<K extends RecordKind>(kind: K, id: string, updater: (r: RecordOf<K>) => RecordOf<K>): Promise<RecordOf<K>> {
    const [data, writes] = this.hashes(kind);
    for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
      const [raw, version] = await this.run(`read ${kind}`, true, () => this.redis.vtReadVersioned(data, writes, id));
      if (!raw || !version) throw new NotFoundError(kind, id);
      const next = updater(parseRecord(kind, id, raw));
      if ((next as { id: string }).id !== id) throw new Error(`an update of ${kind} ${id} must not change its id`);
      const json = JSON.stringify(next);
      const wid = randomUUID();
      const tokens = kind === 'session' ? tokenHashes(next as SessionRecord) : [];
      const done = await this.run(`update ${kind}`, true, () => this.redis.vtCas(data, writes, this.key('tokens'), id, version, json, wid, ...tokens));
      if (done === 1) return JSON.parse(json) as RecordOf<K>;
      if (done === -1) throw new NotFoundError(kind, id);
      // Lost the race: back off a little (jittered, growing) so a crowd of writers spreads out.
      await sleep(Math.random() * Math.min(20, round));
    }
    throw new StoreConflictError(kind, id, MAX_CAS_ROUNDS);
  }

  /** One Redis call through the guarded connection; `idempotent`: safe to send again after a dropped connection. */
  private run<T>(what: string, idempotent: boolean, call: () => Promise<T>): Promise<T> {
    return this.conn.run(what, idempotent, call);
  }
}

function tokenHashes(s: SessionRecord): string[] {
  return s.resumeTokenHash ? [s.tokenHash, s.resumeTokenHash] : [s.tokenHash];
}

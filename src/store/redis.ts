import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';
import { LOCK_SCRIPTS, RedisLocks, type RedisLockOptions } from './redis-lock.ts';
import { parseRecord, type RecordKind, type RecordOf } from './schemas.ts';
import {
  NotFoundError,
  StoreConflictError,
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
 */

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

const DEFAULTS = { opTimeoutMs: 5000, connectTimeoutMs: 5000 };
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
  private readonly redis: Redis & Scripts;
  private readonly locks: RedisLocks;
  private readonly opTimeoutMs: number;
  private readonly log: Logger;
  private readonly p: string;
  private closed = false;

  /** Connects and checks Redis; rejects with StoreUnavailableError when it cannot reach it. */
  static async open(opts: RedisStoreOptions): Promise<RedisStore> {
    const store = new RedisStore(opts);
    await store.connect(opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, opts.url);
    return store;
  }

  private constructor(opts: RedisStoreOptions) {
    this.p = opts.keyPrefix;
    this.log = opts.log;
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULTS.opTimeoutMs;
    const redis = new Redis(opts.url, {
      lazyConnect: true,
      // Commands are never parked in ioredis' offline queue (it would send them whenever Redis
      // comes back, long after the caller gave up): run() waits for the connection itself, with
      // a bound, and sends only then. Commands in flight when the connection drops fail at once
      // (maxRetriesPerRequest 0) instead of being re-sent blindly; run() decides what is safe.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.opTimeoutMs,
      connectTimeout: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      // Reconnect forever, at most once a second: Redis coming back must bring the node back.
      retryStrategy: (times) => Math.min(times * 100, 1000),
    });
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
    let lastError = '';
    redis.on('error', (err: Error) => {
      // One line per distinct error, not one per reconnect attempt.
      if (err.message !== lastError) this.log.warn({ err: err.message }, 'redis connection error');
      lastError = err.message;
    });
    redis.on('ready', () => {
      if (lastError) this.log.info('redis connection back');
      lastError = '';
    });
  }

  private async connect(timeoutMs: number, url: string): Promise<void> {
    const where = describeUrl(url);
    // connect() rejects with "Connection is closed."; the socket's own error (ECONNREFUSED,
    // ENOTFOUND, WRONGPASS…) comes as an 'error' event, and that is what an operator needs.
    let firstError: Error | undefined;
    const onError = (err: Error) => (firstError ??= err);
    this.redis.on('error', onError);
    try {
      await withTimeout(this.redis.connect(), timeoutMs, () => new StoreUnavailableError(`Redis at ${where} did not answer within ${timeoutMs} ms`));
    } catch (err) {
      this.closed = true;
      this.redis.disconnect();
      if (err instanceof StoreUnavailableError) throw err;
      const cause = firstError ?? (err as Error);
      throw new StoreUnavailableError(`cannot connect to Redis at ${where}: ${cause.message}`, false, { cause });
    } finally {
      this.redis.off('error', onError);
    }
    await this.checkServer(where);
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await withTimeout(this.redis.quit(), 1000, () => new Error('quit timed out'));
    } catch {
      // Redis is away: drop the connection without waiting for it.
      this.redis.disconnect();
    }
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

  /**
   * Runs one Redis call within the operation bound. While the connection is down the call waits
   * for it (it has not been sent, so that is always safe). A call that was in flight when the
   * connection dropped is sent again only when it is idempotent; otherwise its outcome is unknown
   * and the caller is told so.
   */
  private async run<T>(what: string, idempotent: boolean, call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.opTimeoutMs;
    for (;;) {
      if (this.closed) throw new StoreUnavailableError('the store is closed');
      await this.connected(what, deadline);
      try {
        return await call();
      } catch (err) {
        const failure = connectionFailure(err);
        if (!failure) throw err;
        if (failure === 'sent' && !idempotent) {
          throw new StoreUnavailableError(`Redis connection lost during ${what}; it may or may not have been applied`, true, { cause: err });
        }
        if (Date.now() >= deadline) {
          throw new StoreUnavailableError(`Redis unavailable: ${what} did not complete within ${this.opTimeoutMs} ms`, failure === 'sent', { cause: err });
        }
        // Give ioredis a moment to notice the drop before looking at its status again.
        await sleep(Math.min(50, Math.max(0, deadline - Date.now())));
      }
    }
  }

  private connected(what: string, deadline: number): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new StoreUnavailableError(`Redis unavailable: no connection for ${what} within ${this.opTimeoutMs} ms`));
      }, Math.max(0, deadline - Date.now()));
      this.redis.once('ready', onReady);
    });
  }
}

/** 'unsent': the command never left (safe to send later); 'sent': it may have run. */
function connectionFailure(err: unknown): 'unsent' | 'sent' | undefined {
  if (!(err instanceof Error)) return undefined;
  if (err.message.startsWith("Stream isn't writeable")) return 'unsent';
  if (err.name === 'MaxRetriesPerRequestError' || err.message === 'Command timed out' || err.message === 'Connection is closed.') return 'sent';
  return undefined;
}

function tokenHashes(s: SessionRecord): string[] {
  return s.resumeTokenHash ? [s.tokenHash, s.resumeTokenHash] : [s.tokenHash];
}

/** host:port of a redis:// URL, for messages and logs (never the password). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '6379'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return '(unparseable URL)';
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(error()), ms)))]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

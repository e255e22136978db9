/**
 * One-time-code state in Redis, for several nodes (REDIS_URL set): the teller's node issues the
 * code, the customer's node verifies it, both against the same key.
 *
 * Layout: one string per session, `<REDIS_KEY_PREFIX>otp:<sessionId>` → the OtpState as JSON (an
 * HMAC of the code, never the code), expiring after the retention (PX, set again at every write,
 * so it counts from the last change, as in the memory store). The retention runs on Redis's
 * clock; a code's own expiry (`expiresAt`) is decided by codes.ts on the server's clock.
 *
 * update() is optimistic, like src/store/redis.ts: GET the value, run `fn`, then a script writes
 * only if the key still holds exactly the value that was read (compare-and-set); otherwise another
 * node or request wrote in between, so `fn` runs again on the new value (it is pure). Comparing the
 * whole value is enough for that: `fn` depends on nothing else, so the same value gives the same
 * outcome. Why a script and not WATCH/MULTI/EXEC: a WATCH belongs to the connection, and all of a
 * node's updates share one connection, so one update's EXEC clears the WATCH of another in flight
 * (whose write then goes through unchecked, a lost update), and so does a reconnect between WATCH
 * and EXEC. The script carries its own check whatever else the connection is doing.
 *
 * Redis away: operations wait for the connection up to `opTimeoutMs`, then fail with
 * OtpStoreUnavailableError (`code: 'unavailable'`, which signaling answers as a typed
 * `unavailable` error). A write whose connection dropped after it was sent is not sent again (it
 * may have counted an attempt already): its caller gets the error with `outcomeUnknown`. The
 * connection discipline is the state store's, shared in src/store/guarded-redis.ts.
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';
import { GuardedRedis, sleep } from '../store/guarded-redis.ts';
import { otpStateSchema, type OtpState, type OtpStateStore } from './store.ts';

export interface RedisOtpStoreOptions {
  url: string;
  /** The deployment's REDIS_KEY_PREFIX: keys are `<prefix>otp:<sessionId>`. */
  keyPrefix: string;
  log: Logger;
  /** Bound on one operation, waits for a reconnect included, before OtpStoreUnavailableError. */
  opTimeoutMs?: number;
  /** Bound on the first connection at start. */
  connectTimeoutMs?: number;
}

/** Writers racing on one session retry; a session sees a handful of writes, so this is never reached in practice. */
const MAX_CAS_ROUNDS = 100;

// KEYS: the session's key. ARGV: the value read ('' when there was none), the new value, retention ms.
const CAS = `
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`;

type Scripts = { vtOtpCas(key: string, expected: string, json: string, retentionMs: number): Promise<number> };

/** Redis did not answer within the bound, or the store is closed. Nothing was written unless `outcomeUnknown`. */
export class OtpStoreUnavailableError extends Error {
  /** The signaling error code (signaling/handlers.ts maps an error's `code`). */
  readonly code = 'unavailable' as const;
  constructor(
    message: string,
    /** True when a write may or may not have been applied (the connection dropped after sending it). */
    readonly outcomeUnknown = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'OtpStoreUnavailableError';
  }
}

/** The value under a session's key is not a one-time-code state (hand edit, another program, old format). */
export class OtpStoreDataError extends Error {
  constructor(
    readonly sessionId: string,
    detail: string,
  ) {
    super(`stored one-time-code state of session ${sessionId} is malformed: ${detail}`);
    this.name = 'OtpStoreDataError';
  }
}

/** An update kept losing to other writers of the same session; nothing was written. */
export class OtpStoreConflictError extends Error {
  readonly code = 'conflict' as const;
  constructor(
    readonly sessionId: string,
    readonly rounds: number,
  ) {
    super(`one-time code of session ${sessionId}: gave up after ${rounds} conflicting writes`);
    this.name = 'OtpStoreConflictError';
  }
}

export class RedisOtpStore implements OtpStateStore {
  private readonly conn: GuardedRedis;
  private readonly redis: Redis & Scripts;
  private readonly log: Logger;
  private readonly p: string;

  /** Connects; rejects with OtpStoreUnavailableError when Redis cannot be reached. */
  static async open(opts: RedisOtpStoreOptions): Promise<RedisOtpStore> {
    const store = new RedisOtpStore(opts);
    await store.conn.connect();
    store.log.info({ redis: store.conn.where, keyPrefix: store.p }, 'one-time codes: redis');
    return store;
  }

  private constructor(opts: RedisOtpStoreOptions) {
    this.p = `${opts.keyPrefix}otp:`;
    this.log = opts.log;
    // The state store's connection discipline, with this store's errors and wording: nothing
    // parked in ioredis' offline queue, nothing re-sent behind our back.
    this.conn = new GuardedRedis(opts, {
      prefix: 'one-time codes: ',
      closedMessage: 'the one-time-code store is closed',
      unavailable: (message, outcomeUnknown, options) => new OtpStoreUnavailableError(message, outcomeUnknown, options),
    });
    this.conn.client.defineCommand('vtOtpCas', { numberOfKeys: 1, lua: CAS });
    this.redis = this.conn.client as Redis & Scripts;
  }

  async update<T>(sessionId: string, retentionMs: number, fn: (current: OtpState | undefined) => { next?: OtpState; result: T }): Promise<T> {
    if (!Number.isSafeInteger(retentionMs) || retentionMs < 1) throw new RangeError('retentionMs must be a positive integer');
    const key = this.p + sessionId;
    for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
      // A read is safe to send again after a dropped connection.
      const raw = await this.run('read', true, sessionId, () => this.redis.get(key));
      const { next, result } = fn(raw === null ? undefined : parseState(sessionId, raw));
      if (!next) return result;
      const json = JSON.stringify(otpStateSchema.parse(next));
      const done = await this.run('write', false, sessionId, () => this.redis.vtOtpCas(key, raw ?? '', json, retentionMs));
      if (done === 1) return result;
      // Lost the race: back off a little (jittered, growing) so a crowd of writers spreads out.
      await sleep(Math.random() * Math.min(20, round));
    }
    throw new OtpStoreConflictError(sessionId, MAX_CAS_ROUNDS);
  }

  async delete(sessionId: string): Promise<void> {
    await this.run('delete', true, sessionId, () => this.redis.del(this.p + sessionId));
  }

  close(): Promise<void> {
    return this.conn.close();
  }

  /**
   * One Redis call through the guarded connection (src/store/guarded-redis.ts): waits for the
   * connection within the bound, sends again after a dropped connection only when `resendable`.
   * A key of another Redis type is this session's malformed data, not an outage.
   */
  private async run<T>(what: string, resendable: boolean, sessionId: string, call: () => Promise<T>): Promise<T> {
    try {
      return await this.conn.run(`the one-time-code ${what}`, resendable, call);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('WRONGTYPE')) throw new OtpStoreDataError(sessionId, 'the key holds another Redis type');
      throw err;
    }
  }
}

/** A stored value, checked: whatever is in Redis is outside input. */
function parseState(sessionId: string, raw: string): OtpState {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new OtpStoreDataError(sessionId, 'not JSON');
  }
  const parsed = otpStateSchema.safeParse(value);
  if (!parsed.success) throw new OtpStoreDataError(sessionId, parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
  return parsed.data;
}

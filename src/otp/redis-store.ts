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
 * may have counted an attempt already): its caller gets the error with `outcomeUnknown`.
 */
import { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';
import { describeUrl } from '../store/redis.ts';
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

const DEFAULTS = { opTimeoutMs: 5000, connectTimeoutMs: 5000 };
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
  private readonly redis: Redis & Scripts;
  private readonly opTimeoutMs: number;
  private readonly log: Logger;
  private readonly p: string;
  private closed = false;

  /** Connects; rejects with OtpStoreUnavailableError when Redis cannot be reached. */
  static async open(opts: RedisOtpStoreOptions): Promise<RedisOtpStore> {
    const store = new RedisOtpStore(opts);
    await store.connect(opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, opts.url);
    return store;
  }

  private constructor(opts: RedisOtpStoreOptions) {
    this.p = `${opts.keyPrefix}otp:`;
    this.log = opts.log;
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULTS.opTimeoutMs;
    // The same connection discipline as src/store/redis.ts: nothing parked in ioredis' offline
    // queue, nothing re-sent behind our back; run() decides what waits and what is safe to resend.
    const redis = new Redis(opts.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.opTimeoutMs,
      connectTimeout: opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      retryStrategy: (times) => Math.min(times * 100, 1000),
    });
    redis.defineCommand('vtOtpCas', { numberOfKeys: 1, lua: CAS });
    this.redis = redis as Redis & Scripts;
    let lastError = '';
    redis.on('error', (err: Error) => {
      if (err.message !== lastError) this.log.warn({ err: err.message }, 'one-time codes: redis connection error');
      lastError = err.message;
    });
    redis.on('ready', () => {
      if (lastError) this.log.info('one-time codes: redis connection back');
      lastError = '';
    });
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

  private async connect(timeoutMs: number, url: string): Promise<void> {
    const where = describeUrl(url);
    // connect() rejects with "Connection is closed."; the socket's own error (ECONNREFUSED,
    // WRONGPASS…) comes as an 'error' event, and that is what an operator needs.
    let firstError: Error | undefined;
    const onError = (err: Error) => (firstError ??= err);
    this.redis.on('error', onError);
    try {
      await withTimeout(this.redis.connect(), timeoutMs, () => new OtpStoreUnavailableError(`one-time codes: Redis at ${where} did not answer within ${timeoutMs} ms`));
    } catch (err) {
      this.closed = true;
      this.redis.disconnect();
      if (err instanceof OtpStoreUnavailableError) throw err;
      const cause = firstError ?? (err as Error);
      throw new OtpStoreUnavailableError(`one-time codes: cannot connect to Redis at ${where}: ${cause.message}`, false, { cause });
    } finally {
      this.redis.off('error', onError);
    }
    this.log.info({ redis: where, keyPrefix: this.p }, 'one-time codes: redis');
  }

  /**
   * One Redis call within the operation bound. While the connection is down the call waits for
   * it (not sent yet: always safe). A call in flight when the connection dropped is sent again
   * only when `resendable`; otherwise its outcome is unknown and the caller is told so.
   */
  private async run<T>(what: string, resendable: boolean, sessionId: string, call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.opTimeoutMs;
    for (;;) {
      if (this.closed) throw new OtpStoreUnavailableError('the one-time-code store is closed');
      await this.connected(what, deadline);
      try {
        return await call();
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('WRONGTYPE')) throw new OtpStoreDataError(sessionId, 'the key holds another Redis type');
        const failure = connectionFailure(err);
        if (!failure) throw err;
        if (failure === 'sent' && !resendable) {
          throw new OtpStoreUnavailableError(`Redis connection lost during the one-time-code ${what}; it may or may not have been applied`, true, { cause: err });
        }
        if (Date.now() >= deadline) {
          throw new OtpStoreUnavailableError(`Redis unavailable: one-time-code ${what} did not complete within ${this.opTimeoutMs} ms`, failure === 'sent', { cause: err });
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
        reject(new OtpStoreUnavailableError(`Redis unavailable: no connection for the one-time-code ${what} within ${this.opTimeoutMs} ms`));
      }, Math.max(0, deadline - Date.now()));
      this.redis.once('ready', onReady);
    });
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

/** 'unsent': the command never left (safe to send later); 'sent': it may have run. */
function connectionFailure(err: unknown): 'unsent' | 'sent' | undefined {
  if (!(err instanceof Error)) return undefined;
  if (err.message.startsWith("Stream isn't writeable")) return 'unsent';
  if (err.name === 'MaxRetriesPerRequestError' || err.message === 'Command timed out' || err.message === 'Connection is closed.') return 'sent';
  return undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(error()), ms)))]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

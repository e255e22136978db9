import { Redis } from 'ioredis';
import type { Logger } from '../logger.ts';

/**
 * One ioredis connection with the discipline every Redis-backed store here needs (the state store,
 * src/store/redis.ts, and the one-time codes, src/otp/redis-store.ts). What it protects against,
 * while Redis is away or the connection drops:
 *
 * - late writes: ioredis' offline queue would send a command whenever Redis comes back, long after
 *   its caller gave up and told its own caller it failed. Nothing is parked there; run() waits for
 *   the connection itself, within the operation bound, and sends only then.
 * - double writes: ioredis would re-send a command that was in flight when the connection
 *   dropped. Nothing is re-sent behind our back; run() re-sends only what its caller says is safe
 *   to send twice, and otherwise throws the owner's typed error with `outcomeUnknown` (the command
 *   may or may not have been applied).
 * - hangs: every operation, reconnect waits included, ends within `opTimeoutMs`; the first
 *   connection within `connectTimeoutMs`, failing with the socket's own error (ECONNREFUSED,
 *   WRONGPASS…), which is what an operator needs, never the password.
 * - a node that stays down: ioredis reconnects forever, at most once a second, so Redis coming
 *   back brings the node back; the log says so once ("connection back"), and says each distinct
 *   error once, not once per reconnect attempt.
 *
 * Each owner keeps its own typed errors: it passes the factory for them and the wording of its
 * messages (prefix, operation labels); anything run() does not recognise as a connection failure
 * (a Redis error reply such as WRONGTYPE, a script error) reaches the owner unchanged.
 */

/** The owner's "Redis unavailable" error, with `outcomeUnknown` when a write may or may not have been applied. */
export type UnavailableErrorFactory = (message: string, outcomeUnknown: boolean, options?: { cause?: unknown }) => Error;

/** What a store's own options carry about its connection (RedisStoreOptions and RedisOtpStoreOptions do). */
export interface ConnectionOptions {
  url: string;
  log: Logger;
  /** Bound on one operation, waits for a reconnect included; 5000 ms unless set. */
  opTimeoutMs?: number;
  /** Bound on the first connection at start; 5000 ms unless set. */
  connectTimeoutMs?: number;
}

/** How the owner words its messages and types its errors. */
export interface OwnerOptions {
  /** Put before log lines and connection errors, so an operator can tell the connections apart ('' or e.g. 'one-time codes: '). */
  prefix: string;
  /** The message of the error run() throws once the connection is closed. */
  closedMessage: string;
  unavailable: UnavailableErrorFactory;
}

const DEFAULTS = { opTimeoutMs: 5000, connectTimeoutMs: 5000 };

export class GuardedRedis {
  /** The connection, for defining scripts on it; send commands through run(). */
  readonly client: Redis;
  /** host:port[/db] of the URL, for messages and logs. */
  readonly where: string;
  private readonly opts: Required<ConnectionOptions> & OwnerOptions;
  private closed = false;

  constructor(connection: ConnectionOptions, owner: OwnerOptions) {
    const opts = {
      ...owner,
      url: connection.url,
      log: connection.log,
      opTimeoutMs: connection.opTimeoutMs ?? DEFAULTS.opTimeoutMs,
      connectTimeoutMs: connection.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    };
    this.opts = opts;
    this.where = describeUrl(opts.url);
    const redis = new Redis(opts.url, {
      lazyConnect: true,
      // Commands are never parked in ioredis' offline queue: run() waits for the connection
      // itself, with a bound, and sends only then. Commands in flight when the connection drops
      // fail at once (maxRetriesPerRequest 0) instead of being re-sent blindly; run() decides
      // what is safe.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.opTimeoutMs,
      connectTimeout: opts.connectTimeoutMs,
      // Reconnect forever, at most once a second: Redis coming back must bring the node back.
      retryStrategy: (times) => Math.min(times * 100, 1000),
    });
    this.client = redis;
    let lastError = '';
    redis.on('error', (err: Error) => {
      // One line per distinct error, not one per reconnect attempt.
      if (err.message !== lastError) opts.log.warn({ err: err.message }, `${opts.prefix}redis connection error`);
      lastError = err.message;
    });
    redis.on('ready', () => {
      if (lastError) opts.log.info(`${opts.prefix}redis connection back`);
      lastError = '';
    });
  }

  /** The first connection; rejects with the owner's error (and closes) when Redis cannot be reached in time. */
  async connect(): Promise<void> {
    const { connectTimeoutMs: timeoutMs, prefix, unavailable } = this.opts;
    // connect() rejects with "Connection is closed."; the socket's own error (ECONNREFUSED,
    // ENOTFOUND, WRONGPASS…) comes as an 'error' event, and that is what an operator needs.
    let firstError: Error | undefined;
    const onError = (err: Error) => (firstError ??= err);
    let timedOut: Error | undefined;
    this.client.on('error', onError);
    try {
      await withTimeout(this.client.connect(), timeoutMs, () => (timedOut = unavailable(`${prefix}Redis at ${this.where} did not answer within ${timeoutMs} ms`, false)));
    } catch (err) {
      this.closed = true;
      this.client.disconnect();
      if (err === timedOut) throw err;
      const cause = firstError ?? (err as Error);
      throw unavailable(`${prefix}cannot connect to Redis at ${this.where}: ${cause.message}`, false, { cause });
    } finally {
      this.client.off('error', onError);
    }
  }

  /**
   * Runs one Redis call within the operation bound. While the connection is down the call waits
   * for it (it has not been sent, so that is always safe). A call that was in flight when the
   * connection dropped is sent again only when `resendable` (idempotent, or able to recognise its
   * own earlier run); otherwise its outcome is unknown and the caller is told so. `label` names
   * the operation in messages.
   */
  async run<T>(label: string, resendable: boolean, call: () => Promise<T>): Promise<T> {
    const { opTimeoutMs, unavailable } = this.opts;
    const deadline = Date.now() + opTimeoutMs;
    for (;;) {
      if (this.closed) throw unavailable(this.opts.closedMessage, false);
      await this.connected(label, deadline);
      try {
        return await call();
      } catch (err) {
        const failure = connectionFailure(err);
        if (!failure) throw err;
        if (failure === 'sent' && !resendable) {
          throw unavailable(`Redis connection lost during ${label}; it may or may not have been applied`, true, { cause: err });
        }
        if (Date.now() >= deadline) {
          throw unavailable(`Redis unavailable: ${label} did not complete within ${opTimeoutMs} ms`, failure === 'sent', { cause: err });
        }
        // Give ioredis a moment to notice the drop before looking at its status again.
        await sleep(Math.min(50, Math.max(0, deadline - Date.now())));
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await withTimeout(this.client.quit(), 1000, () => new Error('quit timed out'));
    } catch {
      // Redis is away: drop the connection without waiting for it.
      this.client.disconnect();
    }
  }

  private connected(label: string, deadline: number): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        reject(this.opts.unavailable(`Redis unavailable: no connection for ${label} within ${this.opts.opTimeoutMs} ms`, false));
      }, Math.max(0, deadline - Date.now()));
      this.client.once('ready', onReady);
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
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(error()), ms)))]).finally(() => clearTimeout(timer));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

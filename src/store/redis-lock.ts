import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.ts';
import { LockTimeoutError } from './types.ts';

/**
 * A named lock across nodes: `SET key token NX PX ttl` to take it, a compare-and-delete script
 * to release it (only the holder's token deletes it, so a holder whose lock expired never
 * releases someone else's), and a compare-and-extend script every ttl/3 while the holder runs, so
 * a long holder (a decision writing its record) keeps it and a dead node's lock expires after ttl.
 *
 * Holders in one process first queue on a local FIFO, so only one request per node and name
 * polls Redis at a time. The whole wait (local queue and Redis) is bounded by `waitMs`; past it
 * the caller gets LockTimeoutError and its fn never runs.
 *
 * What this does not give: fencing. A holder stalled longer than ttl (a frozen event loop, a
 * partitioned node) can still be running when the next holder starts; the renewal logs it at
 * error level when it notices. Keep ttl well above any pause the process can take.
 */

export interface RedisLockOptions {
  /** Lock lifetime without renewal: how long a dead node's lock blocks the others. */
  ttlMs: number;
  /** Longest wait for the lock (local queue plus Redis) before LockTimeoutError. */
  waitMs: number;
  /** Delay between tries while another node holds the lock (jittered, grows up to 4×). */
  retryMs: number;
}

/** The three atomic steps, as RedisStore runs them (scripts, within its operation bound). */
export interface LockBackend {
  /** Takes the lock for token, or answers true if token already holds it (a re-sent acquire). */
  acquire(key: string, token: string, ttlMs: number): Promise<boolean>;
  /** Deletes the lock only if token holds it. */
  release(key: string, token: string): Promise<void>;
  /** Extends the lock only if token holds it; false if it is gone or someone else's. */
  extend(key: string, token: string, ttlMs: number): Promise<boolean>;
}

export const LOCK_SCRIPTS = {
  acquire: `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`,
  release: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`,
  extend: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`,
};

export class RedisLocks {
  private readonly local = new Map<string, LocalMutex>();

  constructor(
    private readonly backend: LockBackend,
    private readonly keyOf: (name: string) => string,
    private readonly opts: RedisLockOptions,
    private readonly log: Logger,
  ) {}

  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const started = Date.now();
    const deadline = started + this.opts.waitMs;
    let mutex = this.local.get(name);
    if (!mutex) this.local.set(name, (mutex = new LocalMutex()));
    const releaseLocal = await mutex.acquire(deadline).catch(() => {
      throw new LockTimeoutError(name, Date.now() - started);
    });
    try {
      const key = this.keyOf(name);
      const token = await this.acquire(key, name, started, deadline);
      const renewal = this.keepAlive(key, name, token);
      try {
        return await fn();
      } finally {
        clearInterval(renewal);
        await this.release(key, name, token);
      }
    } finally {
      releaseLocal();
      if (mutex.idle()) this.local.delete(name);
    }
  }

  private async acquire(key: string, name: string, started: number, deadline: number): Promise<string> {
    const token = randomUUID();
    for (let attempt = 0; ; attempt++) {
      if (await this.backend.acquire(key, token, this.opts.ttlMs)) return token;
      const left = deadline - Date.now();
      if (left <= 0) throw new LockTimeoutError(name, Date.now() - started);
      const base = this.opts.retryMs * Math.min(4, 1 + attempt / 8);
      await sleep(Math.min(left, base / 2 + Math.random() * base));
    }
  }

  private keepAlive(key: string, name: string, token: string): NodeJS.Timeout {
    const timer = setInterval(() => {
      this.backend.extend(key, token, this.opts.ttlMs).then(
        (kept) => {
          if (!kept) {
            clearInterval(timer);
            this.log.error({ lock: name }, 'lock expired while its holder was still running: another holder may have started');
          }
        },
        (err: unknown) => this.log.warn({ err, lock: name }, 'lock renewal failed; retrying'),
      );
    }, Math.max(10, Math.floor(this.opts.ttlMs / 3)));
    timer.unref();
    return timer;
  }

  private async release(key: string, name: string, token: string): Promise<void> {
    try {
      await this.backend.release(key, token);
    } catch (err) {
      // The holder's work is done; failing it now would report a success as a failure. The lock
      // expires by itself within ttl.
      this.log.warn({ err, lock: name, ttlMs: this.opts.ttlMs }, 'lock release failed; it expires by itself');
    }
  }
}

/** FIFO mutex whose waiters give up at a deadline. */
class LocalMutex {
  private held = false;
  private readonly waiters: { grant: () => void; timer: NodeJS.Timeout }[] = [];

  acquire(deadline: number): Promise<() => void> {
    if (!this.held) {
      this.held = true;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          resolve(this.releaser());
        },
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new Error('timeout'));
        }, Math.max(0, deadline - Date.now())),
      };
      this.waiters.push(waiter);
    });
  }

  idle(): boolean {
    return !this.held && this.waiters.length === 0;
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) next.grant();
      else this.held = false;
    };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

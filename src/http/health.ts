import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { Logger } from '../logger.ts';

/**
 * Liveness and readiness.
 * - `/health` (alias `/healthz`): the process answers. Nothing else: restarting a process because
 *   Redis is down would not bring Redis back.
 * - `/ready` (alias `/readyz`): this node should get new work. 503 while draining for shutdown, or
 *   when a backend it needs is down: Redis (REDIS_URL set: PING), PostgreSQL (DATABASE_URL set:
 *   SELECT 1), the media workers (at least one alive). The body names what failed.
 *
 * The probes use their own small connections, not the store's or the ledger's: a probe must not
 * queue behind (or hold) a connection doing real work, and it answers "can this node reach the
 * backend now". Each check is bounded; concurrent readiness requests share one round of checks.
 */
export interface ReadinessCheck {
  name: string;
  /** Resolves when healthy; throws (or times out) when not. */
  check(): Promise<void>;
  close?(): Promise<void>;
}

export interface HealthOptions {
  isDraining: () => boolean;
  checks: ReadinessCheck[];
  /** Bound on each check (default 2 s). */
  timeoutMs?: number;
  log: Logger;
}

type CheckResult = { status: 'ok' } | { status: 'failed'; error: string };

export async function healthRoutes(app: FastifyInstance, opts: HealthOptions): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  let round: Promise<Record<string, CheckResult>> | undefined;
  const runChecks = () =>
    (round ??= (async () => {
      const results = await Promise.all(opts.checks.map(async (c) => [c.name, await runOne(c, timeoutMs)] as const));
      return Object.fromEntries(results);
    })().finally(() => (round = undefined)));

  const live = async () => ({ status: 'ok' });
  const ready = async (_req: unknown, reply: import('fastify').FastifyReply) => {
    if (opts.isDraining()) return reply.code(503).send({ status: 'draining', failing: ['draining'] });
    const checks = await runChecks();
    const failing = Object.entries(checks)
      .filter(([, r]) => r.status !== 'ok')
      .map(([name]) => name);
    if (failing.length > 0) {
      opts.log.warn({ failing, checks }, 'not ready');
      return reply.code(503).send({ status: 'not_ready', failing, checks });
    }
    return reply.send({ status: 'ready', checks });
  };
  app.get('/health', live);
  app.get('/healthz', live);
  app.get('/ready', ready);
  app.get('/readyz', ready);
  app.addHook('onClose', async () => {
    await Promise.all(opts.checks.map((c) => c.close?.().catch(() => undefined)));
  });
}

async function runOne(c: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      c.check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { status: 'ok' };
  } catch (err) {
    // The message only: errors from the drivers name host and port, never the password.
    return { status: 'failed', error: (err as Error).message || String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/** Redis answers PING on a connection of the probe's own (never queued while disconnected). */
export function redisCheck(url: string): ReadinessCheck {
  const redis = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    // Reconnect in the background with a short, capped backoff so a Redis that comes back is seen soon.
    retryStrategy: (times) => Math.min(times * 200, 1000),
  });
  redis.on('error', () => undefined); // reported through the check, not as an unhandled event
  return {
    name: 'redis',
    async check() {
      if (redis.status === 'wait') await redis.connect();
      if (redis.status !== 'ready') throw new Error(`not connected (${redis.status})`);
      const pong = await redis.ping();
      if (pong !== 'PONG') throw new Error(`unexpected PING answer`);
    },
    async close() {
      redis.disconnect();
    },
  };
}

/** PostgreSQL answers SELECT 1 through a one-connection pool of the probe's own. */
export function postgresCheck(url: string, log: Logger): ReadinessCheck {
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 2000, idleTimeoutMillis: 30_000, application_name: 'videoteller-ready' });
  pool.on('error', (err) => log.debug({ err }, 'readiness probe: an idle PostgreSQL connection failed'));
  return {
    name: 'postgres',
    async check() {
      await pool.query('SELECT 1');
    },
    close: () => pool.end(),
  };
}

/** At least one media worker is alive (a dead one is being replaced; none alive = no call can start). */
export function mediaCheck(alive: () => number, configured: number): ReadinessCheck {
  return {
    name: 'media',
    async check() {
      const n = alive();
      if (n === 0) throw new Error(`no media worker alive (of ${configured})`);
    },
  };
}

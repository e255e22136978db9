/**
 * Connecting to PostgreSQL with errors that say where and why, never with the password.
 */
import pg from 'pg';
import type { Logger } from '../../logger.ts';
import { LedgerError } from '../types.ts';

/** `postgres://user@host:port/db` with any password left out (for messages and logs). */
export function describeDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    const user = u.username ? `${decodeURIComponent(u.username)}@` : '';
    return `${u.protocol}//${user}${u.host}${u.pathname}`;
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string; errors?: { message?: string }[] };
  // Node gives an AggregateError with an empty message when every address of a host refused.
  const msg = e.message || e.errors?.map((x) => x.message).join('; ') || String(err);
  return e.code && !msg.includes(e.code) ? `${e.code}: ${msg}` : msg;
}

export interface PoolOptions {
  url: string;
  log: Logger;
  /** Connections at most (default 4: one writer, the rest for reads and checkpoints). */
  max?: number;
  connectTimeoutMs?: number;
  applicationName?: string;
}

/**
 * A pool whose first connection has been made: a database that is down or refuses us is a
 * LedgerError('failed') at start, naming the server (not the password) and the cause.
 */
export async function openPool(opts: PoolOptions): Promise<pg.Pool> {
  const where = describeDatabaseUrl(opts.url);
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 4,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    application_name: opts.applicationName ?? 'videoteller-ledger',
  });
  // An idle connection that the server drops (restart, failover) must not crash the process: the
  // next query takes a fresh connection, and a failed transaction is reported to its caller.
  pool.on('error', (err) => opts.log.warn({ err, db: where }, 'an idle PostgreSQL connection failed'));
  try {
    const client = await pool.connect();
    client.release();
  } catch (err) {
    await pool.end().catch(() => {});
    throw new LedgerError('failed', `cannot connect to PostgreSQL at ${where} (DATABASE_URL): ${reason(err)}`, { cause: err });
  }
  return pool;
}

export function newClient(url: string, applicationName = 'videoteller-ledger'): pg.Client {
  return new pg.Client({ connectionString: url, application_name: applicationName, connectionTimeoutMillis: 10_000 });
}

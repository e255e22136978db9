/**
 * The PostgreSQL ledger's tables, created at open (IF NOT EXISTS, in one transaction, under an
 * advisory lock so that nodes starting together do not race on the catalog).
 *
 *   ledger_meta         one row: format, version and the origin this schema's log was created for
 *   ledger_logs         one row per log: its head (the number of committed entries); appenders
 *                       lock it FOR UPDATE, which is what makes one writer at a time per log
 *   ledger_entries      (origin, idx) primary key; the canonical entry bytes exactly as hashed
 *                       (bytea), their RFC 6962 leaf hash, and the session id for entriesOf
 *   ledger_checkpoints  every signed checkpoint, in the order signed (seq), one per tree size
 */
import type { PoolClient } from 'pg';
import { LedgerError } from '../types.ts';

export const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;
export const DEFAULT_SCHEMA = 'videoteller';
export const FORMAT = 'videoteller-ledger';
export const VERSION = 1;

/** Key space of this module's advisory locks (the first half of pg_advisory_xact_lock(int, int)). */
const LOCK_SPACE = 0x76746c67; // 'vtlg'

export function checkSchemaName(schema: string): string {
  if (!SCHEMA_RE.test(schema)) {
    throw new LedgerError('config', `invalid PostgreSQL schema name ${JSON.stringify(schema)}: lower-case letters, digits and _, at most 63`);
  }
  return schema;
}

/** The schema-qualified, quoted table names (the schema name is checked against SCHEMA_RE). */
export function tables(schema: string) {
  const q = `"${checkSchemaName(schema)}"`;
  return {
    schema: q,
    meta: `${q}.ledger_meta`,
    logs: `${q}.ledger_logs`,
    entries: `${q}.ledger_entries`,
    checkpoints: `${q}.ledger_checkpoints`,
  };
}
export type Tables = ReturnType<typeof tables>;

/**
 * Creates the schema and tables if needed and the log's head row, and checks that the schema
 * belongs to this origin: like the file backend's LEDGER file, a log keeps its origin for life,
 * so a changed LEDGER_ORIGIN is refused rather than silently starting an empty log beside the old.
 */
export async function migrate(client: PoolClient, schema: string, origin: string): Promise<{ created: boolean }> {
  const t = tables(schema);
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_SPACE, schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${t.meta} (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      format text NOT NULL,
      version integer NOT NULL,
      origin text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${t.logs} (
      origin text PRIMARY KEY,
      size bigint NOT NULL CHECK (size >= 0)
    )`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${t.entries} (
      origin text NOT NULL,
      idx bigint NOT NULL CHECK (idx >= 0),
      session_id text NOT NULL,
      entry bytea NOT NULL,
      leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32),
      PRIMARY KEY (origin, idx)
    )`);
    await client.query(`CREATE INDEX IF NOT EXISTS ledger_entries_session ON ${t.entries} (origin, session_id, idx)`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${t.checkpoints} (
      origin text NOT NULL,
      seq bigserial NOT NULL,
      size bigint NOT NULL CHECK (size >= 0),
      root_hash bytea NOT NULL,
      note text NOT NULL,
      signed_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (origin, seq),
      UNIQUE (origin, size)
    )`);
    const meta = await client.query<{ format: string; version: number; origin: string }>(`SELECT format, version, origin FROM ${t.meta}`);
    let created = false;
    if (meta.rows.length === 0) {
      await client.query(`INSERT INTO ${t.meta} (format, version, origin) VALUES ($1, $2, $3)`, [FORMAT, VERSION, origin]);
      created = true;
    } else {
      const m = meta.rows[0]!;
      if (m.format !== FORMAT || m.version !== VERSION) throw new LedgerError('corrupt', `schema ${schema} does not hold a version ${VERSION} videoteller ledger`);
      if (m.origin !== origin) {
        throw new LedgerError('config', `the ledger in schema ${schema} has origin ${JSON.stringify(m.origin)}, but LEDGER_ORIGIN is ${JSON.stringify(origin)}: a log keeps its origin for life`);
      }
    }
    await client.query(`INSERT INTO ${t.logs} (origin, size) VALUES ($1, 0) ON CONFLICT (origin) DO NOTHING`, [origin]);
    await client.query('COMMIT');
    return { created };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

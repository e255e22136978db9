/**
 * Reads a PostgreSQL ledger for the audit, as audit-fs.ts reads a directory: the origin (from
 * ledger_meta), every stored checkpoint in the order signed, then every entry's stored bytes in
 * index order, into a LedgerAuditor. Nothing in the database is trusted: the keys come from the
 * caller, the tree is recomputed from the entry bytes.
 *
 * Besides what the auditor checks, each entry's bytes are compared with the leaf hash stored
 * beside them: that names the entry whose bytes were changed (reported as `frame_crc`, the
 * file format's "bytes changed after writing"), where a checkpoint mismatch only says which
 * checkpoint no longer matches. And the head row must count the entries.
 */
import type pg from 'pg';
import { bytesEqual } from '../bytes.ts';
import { hashLeaf } from '../merkle.ts';
import { nodeEd25519Verify, nodeSha256 } from '../node-crypto.ts';
import { LedgerAuditor, type AuditorOptions, type AuditReport } from '../verify.ts';
import { openPool } from './connect.ts';
import { DEFAULT_SCHEMA, tables } from './schema.ts';
import { createLogger } from '../../logger.ts';

export interface AuditPostgresOptions extends Omit<AuditorOptions, 'sha256' | 'ed25519Verify'> {
  databaseUrl: string;
  /** Schema holding the ledger tables (default `videoteller`). */
  schema?: string;
  /** Signed checkpoints obtained earlier (notes): the ledger must contain each. */
  trusted?: { note: string; label: string }[];
  onProgress?: (done: number, total: number, entries: number) => void;
}

const PAGE = 10_000;

/** Audits the log of `origin` (default: the schema's own, from ledger_meta). */
export async function auditPostgresLedger(opts: AuditPostgresOptions): Promise<AuditReport> {
  const schema = opts.schema ?? DEFAULT_SCHEMA;
  const t = tables(schema);
  const pool = await openPool({ url: opts.databaseUrl, log: createLogger('silent'), max: 1, applicationName: 'videoteller-verify' });
  try {
    return await audit(pool, t, schema, opts);
  } finally {
    await pool.end().catch(() => {});
  }
}

async function audit(pool: pg.Pool, t: ReturnType<typeof tables>, schema: string, opts: AuditPostgresOptions): Promise<AuditReport> {
  const auditor = new LedgerAuditor({ ...opts, sha256: nodeSha256, ed25519Verify: nodeEd25519Verify });
  const exists = await pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${t.meta}`]);
  if (!exists.rows[0]?.t) throw new Error(`schema ${schema} holds no videoteller ledger (no ledger_meta table)`);
  // One snapshot for the whole read, so a live ledger is audited at one consistent moment.
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const meta = await client.query<{ origin: string }>(`SELECT origin FROM ${t.meta}`);
    auditor.setOrigin(meta.rows[0]?.origin);
    const origin = opts.origin ?? meta.rows[0]?.origin;
    if (origin === undefined) return auditor.finish();

    const cps = await client.query<{ seq: string; note: string }>(`SELECT seq, note FROM ${t.checkpoints} WHERE origin = $1 ORDER BY seq`, [origin]);
    for (const row of cps.rows) await auditor.checkpoint(row.note, { file: `${t.checkpoints} seq ${row.seq}` });
    for (const tr of opts.trusted ?? []) await auditor.trustedCheckpoint(tr.note, tr.label);

    const head = await client.query<{ size: string }>(`SELECT size FROM ${t.logs} WHERE origin = $1`, [origin]);
    const headSize = head.rows[0] ? Number(head.rows[0].size) : undefined;
    const total = headSize ?? 0;
    // Keyset pagination by index: every row, in index order, whatever its index says inside.
    let after = -1;
    let rows = 0;
    for (;;) {
      const r = await client.query<{ idx: string; entry: Buffer; leaf_hash: Buffer }>(
        `SELECT idx, entry, leaf_hash FROM ${t.entries} WHERE origin = $1 AND idx > $2 ORDER BY idx LIMIT ${PAGE}`,
        [origin, after],
      );
      for (const row of r.rows) {
        const bytes = new Uint8Array(row.entry);
        const position = auditor.entriesRead;
        if (!bytesEqual(hashLeaf(bytes, nodeSha256), row.leaf_hash)) {
          auditor.problem({
            kind: 'frame_crc',
            index: position,
            message: `entry ${position}: its bytes no longer hash to the leaf hash stored with them (they were changed after it was written)`,
            file: `${t.entries} idx ${row.idx}`,
          });
        }
        auditor.entry(bytes, { file: `${t.entries} idx ${row.idx}` });
        rows++;
      }
      if (r.rows.length > 0) after = Number(r.rows[r.rows.length - 1]!.idx);
      opts.onProgress?.(rows, total, auditor.entriesRead);
      if (r.rows.length < PAGE) break;
    }
    if (headSize === undefined) {
      auditor.problem({ kind: 'ledger_meta', message: `${t.logs} has no head row for ${origin}` });
    } else if (headSize !== rows) {
      auditor.problem({ kind: 'ledger_meta', index: Math.min(headSize, rows), message: `the head row of ${t.logs} says ${headSize} entries, ${t.entries} holds ${rows}` });
    }
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  return auditor.finish();
}

/**
 * The ledger's public surface for the server. See src/ledger/README.md.
 */
import path from 'node:path';
import type { Logger } from '../logger.ts';
import { FileLedger } from './file-ledger.ts';
import { KeyRing } from './keyring.ts';
import { PostgresLedger } from './postgres/pg-ledger.ts';
import type { Ledger } from './types.ts';

export { FileLedger, type FileLedgerOptions } from './file-ledger.ts';
export { KeyRing, type KeyInfo } from './keyring.ts';
export { issueRecord, type IssuedRecord, type RecordIssuerDeps } from './records.ts';
export { verifyRecord, LedgerAuditor, type AuditReport, type AuditProblem, type RecordVerification } from './verify.ts';
export { auditLedgerDir, resolveLedgerDir } from './audit-fs.ts';
export { PostgresLedger, auditPostgresLedger, type PostgresLedgerOptions } from './postgres/index.ts';
export { EntryInputError, type EntryInput, type LedgerEntry } from './entry.ts';
export { LedgerError, type Ledger, type AppendResult, type StoredEntry, type SignedCheckpoint } from './types.ts';
export type { RecordInput, RecordClaims, RecordBundle, EvidenceSummary } from './record-claims.ts';

export interface OpenLedgerOptions {
  /** DATA_DIR: the ledger goes to `${dataDir}/ledger`, keys to `${dataDir}/keys` unless given. */
  dataDir: string;
  /** LEDGER_ORIGIN */
  origin: string;
  /** CHECKPOINT_INTERVAL_MS */
  checkpointIntervalMs: number;
  log: Logger;
  ledgerDir?: string;
  /** LEDGER_KEYS_DIR: nodes sharing a PostgreSQL ledger sign with the key ring in one shared directory. */
  keysDir?: string;
  /** DATABASE_URL: set, the ledger is the PostgreSQL backend; unset, the file ledger in ledgerDir. */
  databaseUrl?: string;
  /** LEDGER_PG_SCHEMA (PostgreSQL only). */
  pgSchema?: string;
}

/**
 * Opens the key ring (generating the first key on a fresh install) and the ledger: PostgreSQL
 * when a database URL is given, else the file ledger.
 */
export async function openLedger(opts: OpenLedgerOptions & { databaseUrl: string }): Promise<{ ledger: PostgresLedger; keyRing: KeyRing }>;
export async function openLedger(opts: OpenLedgerOptions & { databaseUrl?: undefined }): Promise<{ ledger: FileLedger; keyRing: KeyRing }>;
export async function openLedger(opts: OpenLedgerOptions): Promise<{ ledger: Ledger; keyRing: KeyRing }>;
export async function openLedger(opts: OpenLedgerOptions): Promise<{ ledger: Ledger; keyRing: KeyRing }> {
  const keyRing = await KeyRing.open({ dir: opts.keysDir ?? path.join(opts.dataDir, 'keys'), log: opts.log });
  if (opts.databaseUrl) {
    const ledger = await PostgresLedger.open({
      databaseUrl: opts.databaseUrl,
      ...(opts.pgSchema ? { schema: opts.pgSchema } : {}),
      origin: opts.origin,
      keyRing,
      log: opts.log,
      checkpointIntervalMs: opts.checkpointIntervalMs,
    });
    return { ledger, keyRing };
  }
  const ledger = await FileLedger.open({
    dir: opts.ledgerDir ?? path.join(opts.dataDir, 'ledger'),
    origin: opts.origin,
    keyRing,
    log: opts.log,
    checkpointIntervalMs: opts.checkpointIntervalMs,
  });
  return { ledger, keyRing };
}

/**
 * The PostgreSQL backend of the ledger (chosen by DATABASE_URL). See pg-ledger.ts for how it
 * writes and follows other nodes, schema.ts for its tables, audit.ts for the verifier's reader.
 */
export { PostgresLedger, type PostgresLedgerOptions } from './pg-ledger.ts';
export { auditPostgresLedger, type AuditPostgresOptions } from './audit.ts';
export { describeDatabaseUrl } from './connect.ts';
export { DEFAULT_SCHEMA, SCHEMA_RE } from './schema.ts';

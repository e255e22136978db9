/**
 * The ledger as the server composes it: the ledger (the file backend, or PostgreSQL when
 * DATABASE_URL is set) and the key ring (LEDGER_KEYS_DIR) opened from the config, serving as the
 * evidence sink of every part (signaling, HTTP, identity), with its HTTP routes.
 * One place decides which backend and keys are in use; nothing else opens the ledger.
 */
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.ts';
import type { EvidenceEntry, EvidenceSink } from '../evidence.ts';
import { requireStaff } from '../http/auth.ts';
import { ledgerRoutes } from '../http/ledger.ts';
import type { StaffTokens } from '../auth/staff-tokens.ts';
import type { Logger } from '../logger.ts';
import { issueRecord, openLedger, type IssuedRecord, type RecordInput } from './index.ts';
import type { KeyRing } from './keyring.ts';
import { LedgerError, type Ledger, type LedgerEntry } from './types.ts';
import { BlobStore } from '../identity/blobs.ts';
import { recordBundleSchema, type RecordBundle } from './record-claims.ts';

/** Ledger entry naming the blob that holds a record bundle as issued. */
export const RECORD_BUNDLE_ENTRY = 'record.bundle_stored';

export interface ServerLedger {
  ledger: Ledger;
  keyRing: KeyRing;
  /** Every part writes evidence through this: it resolves once the entry is durable. */
  evidence: EvidenceSink;
  entriesOf(sessionId: string): Promise<LedgerEntry[]>;
  /** Issues a verification record: its entry, the JWS, the proof to a fresh signed checkpoint. */
  issueRecord(input: RecordInput): Promise<IssuedRecord>;
  /** The newest record of a session as issued, read back from its blob (`record.bundle_stored`); undefined if none. */
  recordOf(sessionId: string): Promise<RecordBundle | undefined>;
  registerRoutes(http: FastifyInstance, staffTokens: StaffTokens): Promise<void>;
  /** Finishes pending appends and signs a final checkpoint. */
  close(): Promise<void>;
  /**
   * Observes every evidence append (operations metrics): the entry, seconds until durable (or
   * failed), and whether it succeeded. Observers must not throw.
   */
  onAppend(observer: AppendObserver): void;
}

export type AppendObserver = (entry: EvidenceEntry, seconds: number, ok: boolean) => void;

export async function openServerLedger(config: Config, log: Logger): Promise<ServerLedger> {
  const { ledger, keyRing } = await openLedger({
    dataDir: config.DATA_DIR,
    origin: config.LEDGER_ORIGIN,
    checkpointIntervalMs: config.CHECKPOINT_INTERVAL_MS,
    log,
    ...(config.LEDGER_KEYS_DIR ? { keysDir: config.LEDGER_KEYS_DIR } : {}),
    // DATABASE_URL set: PostgreSQL, shared by every node; unset: the embedded file ledger.
    ...(config.DATABASE_URL ? { databaseUrl: config.DATABASE_URL, pgSchema: config.LEDGER_PG_SCHEMA } : {}),
  });
  const observers: AppendObserver[] = [];
  const blobs = new BlobStore(config.DATA_DIR, config.BLOB_DIR);
  // The sink every part writes through, timed from the call until the entry is durable.
  const evidence: EvidenceSink = {
    async append(entry) {
      if (observers.length === 0) return ledger.append(entry);
      const start = performance.now();
      try {
        const r = await ledger.append(entry);
        for (const o of observers) o(entry, (performance.now() - start) / 1000, true);
        return r;
      } catch (err) {
        for (const o of observers) o(entry, (performance.now() - start) / 1000, false);
        throw err;
      }
    },
  };
  return {
    ledger,
    keyRing,
    evidence,
    onAppend: (observer) => void observers.push(observer),
    entriesOf: (sessionId) => ledger.entriesOf(sessionId),
    async issueRecord(input) {
      const issued = await issueRecord({ ledger, keyRing, ttlSeconds: config.RECORD_TTL_S }, input);
      // The record exactly as handed out (JWS, proof, checkpoint) is kept as a blob named by the
      // ledger, so a replay years later has the JWS itself, not only the claims in its entry, whatever
      // the session store has forgotten.
      const { claims, kid: _kid, ...bundle } = issued;
      const blob = await blobs.put(Buffer.from(JSON.stringify(bundle), 'utf8'));
      await evidence.append({ sessionId: input.sessionId, type: RECORD_BUNDLE_ENTRY, actor: 'system', payload: { sha256: blob.sha256, recordJti: claims.jti, recordIndex: issued.index } });
      return issued;
    },
    async recordOf(sessionId) {
      const entry = (await ledger.entriesOf(sessionId)).filter((e) => e.type === RECORD_BUNDLE_ENTRY).at(-1);
      const sha256 = entry?.payload.sha256;
      if (typeof sha256 !== 'string') return undefined;
      const parsed = recordBundleSchema.safeParse(JSON.parse((await blobs.get(sha256)).toString('utf8')));
      if (!parsed.success) throw new LedgerError('corrupt', `the stored record bundle ${sha256} is not a record bundle`);
      return parsed.data;
    },
    async registerRoutes(http, staffTokens) {
      await http.register(ledgerRoutes, { ledger, keyRing, requireRole: requireStaff(staffTokens, ['compliance']) });
    },
    close: () => ledger.close(),
  };
}

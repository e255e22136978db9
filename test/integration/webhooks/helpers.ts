import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { issueRecord, type RecordBundle } from '../../../src/ledger/index.ts';
import { openTestEvidence } from '../../helpers/evidence.ts';
import type { LedgerEntry } from '../../../src/ledger/types.ts';
import { createLogger, type Logger } from '../../../src/logger.ts';
import type { EvidenceSink } from '../../../src/evidence.ts';

export { SECRET, startReceiver, type ReceivedRequest, type Receiver, type Reply } from '../../helpers/webhook-receiver.ts';

/** The real file ledger as evidence sink, plus a real signed record to put in session.decided. */
export interface TestLedger {
  sink: EvidenceSink;
  entries(sessionId?: string): LedgerEntry[];
  record(sessionId: string): Promise<RecordBundle>;
  close(): Promise<void>;
}

export async function openTestLedger(): Promise<TestLedger> {
  const evidence = await openTestEvidence();
  return {
    sink: evidence.sink,
    entries: (sessionId) => evidence.entries(sessionId),
    async record(sessionId) {
      const issued = await issueRecord(
        { ledger: evidence.ledger, keyRing: evidence.keyRing, ttlSeconds: 3600 },
        { decision: 'approved', reason: 'identity_verified', sessionId, customerRef: 'cust-42', businessType: 'consultation', tellerId: 't-alice', tellerScope: 'full_service', evidence: {} },
      );
      const { claims: _c, kid: _k, ...bundle } = issued;
      return bundle;
    },
    close: () => evidence.close(),
  };
}

/** A logger whose every line is kept, to assert what reached the logs (and what did not). */
export function captureLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const dest = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: createLogger('debug', dest), lines };
}

export function tempDataDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'videoteller-wh-'));
}

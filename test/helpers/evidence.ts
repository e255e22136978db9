import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EvidenceSink } from '../../src/evidence.ts';
import { openLedger, type KeyRing } from '../../src/ledger/index.ts';
import type { Ledger, LedgerEntry } from '../../src/ledger/types.ts';
import { createLogger } from '../../src/logger.ts';

export interface TestEvidence {
  /** The real file ledger, in a temporary directory. */
  sink: EvidenceSink;
  /** The durable entries so far, of one session or of all, in order (kept as each append resolves). */
  entries(sessionId?: string): LedgerEntry[];
  /** The ledger and its keys, for tests that also issue records. */
  ledger: Ledger;
  keyRing: KeyRing;
  close(): Promise<void>;
}

/**
 * Evidence for unit tests of the parts that write it (router, state machine): the real signed
 * file ledger, so a test sees exactly what an auditor would, plus a synchronous view of what
 * each session wrote.
 */
export async function openTestEvidence(): Promise<TestEvidence> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'videoteller-evidence-'));
  const { ledger, keyRing } = await openLedger({ dataDir: dir, origin: 'test.local/ledger', checkpointIntervalMs: 60_000, log: createLogger('silent') });
  const written: LedgerEntry[] = [];
  return {
    sink: {
      async append(entry) {
        const result = await ledger.append(entry);
        written.push(result.entry);
        return { index: result.index };
      },
    },
    entries: (sessionId) => written.filter((e) => sessionId === undefined || e.sessionId === sessionId),
    ledger,
    keyRing,
    async close() {
      await ledger.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

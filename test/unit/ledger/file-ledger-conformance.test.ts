import path from 'node:path';
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import type { Ledger } from '../../../src/ledger/types.ts';
import { describeLedgerConformance } from './conformance.ts';
import { silentLogger, tempDir } from './helpers.ts';

describeLedgerConformance('file backend', async ({ checkpointIntervalMs }) => {
  const tmp = tempDir();
  const log = silentLogger();
  const keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log });
  const opts = { dir: path.join(tmp.dir, 'ledger'), origin: 'test.example/ledger', keyRing, log, checkpointIntervalMs, segmentBytes: 4096 };
  let ledger: Ledger = await FileLedger.open(opts);
  return {
    get ledger() {
      return ledger;
    },
    keys: keyRing.publicKeys(),
    async reopen() {
      await ledger.close();
      ledger = await FileLedger.open(opts);
      return ledger;
    },
    async cleanup() {
      await ledger.close();
      tmp.remove();
    },
  };
});

/**
 * The PostgreSQL ledger backend on a real PostgreSQL (127.0.0.1:5432, database `test`): the
 * conformance suite every backend passes, on a fresh schema per ledger.
 */
import path from 'node:path';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { PostgresLedger } from '../../../src/ledger/postgres/pg-ledger.ts';
import type { Ledger } from '../../../src/ledger/types.ts';
import { describeLedgerConformance } from '../../unit/ledger/conformance.ts';
import { silentLogger, tempDir } from '../../unit/ledger/helpers.ts';
import { dropSchema, freshSchema, TEST_DATABASE_URL } from './postgres-helpers.ts';

describeLedgerConformance('PostgreSQL backend', async ({ checkpointIntervalMs }) => {
  const tmp = tempDir();
  const log = silentLogger();
  const schema = freshSchema();
  const keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log });
  const opts = { databaseUrl: TEST_DATABASE_URL, schema, origin: 'test.example/ledger', keyRing, log, checkpointIntervalMs };
  let ledger: Ledger = await PostgresLedger.open(opts);
  return {
    get ledger() {
      return ledger;
    },
    keys: keyRing.publicKeys(),
    async reopen() {
      await ledger.close();
      ledger = await PostgresLedger.open(opts);
      return ledger;
    },
    async cleanup() {
      await ledger.close();
      await dropSchema(schema);
      tmp.remove();
    },
  };
});

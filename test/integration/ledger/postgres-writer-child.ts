/**
 * Child process of the two-node test: one "node" opening the PostgreSQL ledger (its own pool,
 * its own in-memory tree) with the shared key ring directory. It prints `ready <size>`, waits for
 * `go` on stdin so both nodes start appending together, appends `count` entries with `writers`
 * concurrent appenders, printing `ack <index> <leaf hash>` after each append resolved (committed),
 * asks for a checkpoint, prints `done <size> <checkpoint size>` and closes.
 *
 *   tsx postgres-writer-child.ts DATABASE_URL SCHEMA ORIGIN KEYS_DIR NODE COUNT WRITERS
 */
import { once } from 'node:events';
import { toBase64 } from '../../../src/ledger/bytes.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { PostgresLedger } from '../../../src/ledger/postgres/pg-ledger.ts';
import { createLogger } from '../../../src/logger.ts';

const [databaseUrl, schema, origin, keysDir, node, countArg, writersArg] = process.argv.slice(2) as [string, string, string, string, string, string, string];
const log = createLogger(process.env.CHILD_LOG_LEVEL ?? 'silent');
const keyRing = await KeyRing.open({ dir: keysDir, log });
const ledger = await PostgresLedger.open({ databaseUrl, schema, origin, keyRing, log, checkpointIntervalMs: 20 });
process.stdout.write(`ready ${ledger.size} ${keyRing.activeKid}\n`);
process.stdin.setEncoding('utf8');
let input = '';
while (!input.includes('go\n')) {
  const [chunk] = (await once(process.stdin, 'data')) as [string];
  input += chunk;
}

const count = Number(countArg);
let next = 0;
async function writer(w: number): Promise<void> {
  while (next < count) {
    const n = next++;
    const r = await ledger.append({ sessionId: `node-${node}`, type: 'node.test', actor: 'system', payload: { node, writer: w, n } });
    process.stdout.write(`ack ${r.index} ${toBase64(r.leafHash)}\n`);
  }
}
await Promise.all(Array.from({ length: Number(writersArg) }, (_, w) => writer(w)));
const cp = await ledger.checkpoint();
process.stdout.write(`done ${ledger.size} ${cp.size}\n`);
await ledger.close();
process.stdin.destroy();

/**
 * Child process of the crash test: opens the ledger in argv[2] and appends as fast as it can
 * with several concurrent writers, printing `ack <index> <leaf hash>` for every append only after
 * it resolved (durable). The parent kills it with SIGKILL at a random moment.
 */
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { toBase64 } from '../../../src/ledger/bytes.ts';
import { createLogger } from '../../../src/logger.ts';
import path from 'node:path';

const [dataDir, origin, writersArg, segmentArg] = process.argv.slice(2) as [string, string, string, string];
const log = createLogger('silent');
const keyRing = await KeyRing.open({ dir: path.join(dataDir, 'keys'), log });
const ledger = await FileLedger.open({
  dir: path.join(dataDir, 'ledger'),
  origin,
  keyRing,
  log,
  checkpointIntervalMs: 15,
  segmentBytes: Number(segmentArg),
});
process.stdout.write(`ready ${ledger.size}\n`);

let n = 0;
async function writer(w: number): Promise<never> {
  for (;;) {
    const i = n++;
    const r = await ledger.append({
      sessionId: `crash-${w}`,
      type: 'crash.test',
      actor: 'system',
      payload: { writer: w, n: i, pad: 'x'.repeat(i % 200) },
    });
    process.stdout.write(`ack ${r.index} ${toBase64(r.leafHash)}\n`);
  }
}
await Promise.all(Array.from({ length: Number(writersArg) }, (_, w) => writer(w)));

/**
 * The PostgreSQL ledger with several nodes: two separate Node processes appending to one log at
 * once (indexes contiguous, none twice, every checkpoint and proof verifying), a third node
 * learning of their entries, and the audit finding one changed byte in one stored entry.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { fromBase64, toBase64 } from '../../../src/ledger/bytes.ts';
import { openCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { noteKeysFor } from '../../../src/ledger/keys.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { verifyConsistency, verifyInclusion } from '../../../src/ledger/merkle.ts';
import { nodeSha256 } from '../../../src/ledger/node-crypto.ts';
import { auditPostgresLedger } from '../../../src/ledger/postgres/audit.ts';
import { PostgresLedger } from '../../../src/ledger/postgres/pg-ledger.ts';
import { entryInput, silentLogger, tempDir } from '../../unit/ledger/helpers.ts';
import { dropSchema, freshSchema, sql, TEST_DATABASE_URL } from './postgres-helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const CHILD = path.join(here, 'postgres-writer-child.ts');
const CLI = path.join(root, 'bin/videoteller.mjs');
const ORIGIN = 'bank.example/ledger';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup() {
  const tmp = tempDir('vt-pg-nodes-');
  const schema = freshSchema();
  cleanups.push(() => tmp.remove());
  cleanups.push(() => dropSchema(schema));
  return { tmp, schema, keysDir: path.join(tmp.dir, 'keys') };
}

interface Node {
  child: ChildProcess;
  lines: string[];
  waitFor(prefix: string): Promise<string>;
  exit: Promise<number | null>;
}

function startNode(args: string[]): Node {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters.filter((w) => line.startsWith(w.prefix))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  });
  const exit = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      if (code !== 0) process.stderr.write(`writer child exited ${code}: ${stderr}\n`);
      resolve(code);
    }),
  );
  cleanups.push(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    lines,
    exit,
    waitFor: (prefix) => {
      const seen = lines.find((l) => l.startsWith(prefix));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ prefix, resolve });
        void exit.then((code) => reject(new Error(`the child exited (${code}) before printing ${prefix}: ${stderr}`)));
      });
    },
  };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('PostgreSQL ledger, two nodes appending at once', () => {
  it('numbers every entry once, without gaps, and every checkpoint and proof verifies', async () => {
    const { schema, keysDir } = setup();
    const PER_NODE = 600;
    // Both nodes start on a fresh schema and a fresh, shared key directory at the same moment:
    // the migration and the first key are created once.
    const nodes = ['a', 'b'].map((n) => startNode([TEST_DATABASE_URL, schema, ORIGIN, keysDir, n, String(PER_NODE), '8']));
    const ready = await Promise.all(nodes.map((n) => n.waitFor('ready ')));
    expect(ready[0]!.split(' ')[2]).toBe(ready[1]!.split(' ')[2]); // the same signing key

    // A third node, in this process, that appends nothing: it must learn of what they append.
    const log = silentLogger();
    const keyRing = await KeyRing.open({ dir: keysDir, log });
    const observer = await PostgresLedger.open({ databaseUrl: TEST_DATABASE_URL, schema, origin: ORIGIN, keyRing, log, checkpointIntervalMs: 60_000 });
    cleanups.push(() => observer.close());
    const sizeAtStart = observer.size;

    for (const n of nodes) n.child.stdin!.write('go\n');
    expect(await Promise.all(nodes.map((n) => n.exit))).toEqual([0, 0]);

    const total = 2 * PER_NODE;
    const acks = nodes.map((n) =>
      n.lines.filter((l) => l.startsWith('ack ')).map((l) => {
        const [, index, leaf] = l.split(' ');
        return { index: Number(index), leafHash: fromBase64(leaf!) };
      }),
    );
    expect(acks.map((a) => a.length)).toEqual([PER_NODE, PER_NODE]);
    const acked = [...acks[0]!, ...acks[1]!].map((a) => a.index).sort((x, y) => x - y);
    expect(acked).toEqual(Array.from({ length: total }, (_, i) => sizeAtStart + i));

    // In the database: indexes 0..N-1, once each, the head at N, and the two nodes interleaved.
    const rows = await sql<{ idx: string; session_id: string }>(`SELECT idx, session_id FROM "${schema}".ledger_entries ORDER BY idx`);
    expect(rows.rows.map((r) => Number(r.idx))).toEqual(Array.from({ length: total }, (_, i) => i));
    expect((await sql<{ size: string }>(`SELECT size FROM "${schema}".ledger_logs WHERE origin = $1`, [ORIGIN])).rows[0]!.size).toBe(String(total));
    const switches = rows.rows.filter((r, i) => i > 0 && r.session_id !== rows.rows[i - 1]!.session_id).length;
    expect(switches).toBeGreaterThan(1);

    // The observer learns of both nodes' entries and final checkpoint (LISTEN/NOTIFY), without
    // being asked anything.
    await until(() => observer.size === total && observer.latestCheckpoint()?.size === total, 'the observer following the other nodes');
    const cp = observer.latestCheckpoint()!;
    const opened = await openCheckpoint(cp.note, noteKeysFor(ORIGIN, keyRing.publicKeys()), { origin: ORIGIN });
    expect(opened.size).toBe(total);
    for (const a of [...acks[0]!, ...acks[1]!]) {
      expect(verifyInclusion(a.index, total, a.leafHash, await observer.inclusionProof(a.index, total), opened.rootHash, nodeSha256), `entry ${a.index}`).toBe(true);
    }
    // Every stored checkpoint (signed by one node or the other) is consistent with the final tree.
    const stored = await sql<{ size: string; note: string }>(`SELECT size, note FROM "${schema}".ledger_checkpoints ORDER BY seq`);
    expect(stored.rows.length).toBeGreaterThan(2);
    const sizes = stored.rows.map((r) => Number(r.size));
    expect([...sizes].sort((x, y) => x - y)).toEqual(sizes); // signed in size order
    for (const r of stored.rows) {
      const c = await openCheckpoint(r.note, noteKeysFor(ORIGIN, keyRing.publicKeys()), { origin: ORIGIN });
      expect(verifyConsistency(c.size, total, await observer.consistencyProof(c.size, total), c.rootHash, opened.rootHash, nodeSha256), `${c.size} -> ${total}`).toBe(true);
    }

    const report = await auditPostgresLedger({ databaseUrl: TEST_DATABASE_URL, schema, keys: keyRing.publicKeys() });
    expect(report.problems).toEqual([]);
    expect(report).toMatchObject({ ok: true, origin: ORIGIN, entries: total, unsignedEntries: 0, checkpoints: { count: stored.rows.length, verified: stored.rows.length } });
    expect(report.rootHash).toBe(toBase64(opened.rootHash));
  });
});

describe('auditing a PostgreSQL ledger', () => {
  async function ledgerOf(n: number) {
    const s = setup();
    const log = silentLogger();
    const keyRing = await KeyRing.open({ dir: s.keysDir, log });
    const opts = { databaseUrl: TEST_DATABASE_URL, schema: s.schema, origin: ORIGIN, keyRing, log, checkpointIntervalMs: 60_000 };
    const ledger = await PostgresLedger.open(opts);
    for (let i = 0; i < n; i++) {
      await ledger.append(entryInput(i));
      if (i === 9) await ledger.checkpoint();
    }
    await ledger.close();
    const jwks = path.join(s.tmp.dir, 'bank-jwks.json');
    writeFileSync(jwks, JSON.stringify(keyRing.jwks()));
    return { ...s, keyRing, opts, jwks };
  }

  /** Changes one byte of entry `index` in the table: the digit of its payload's `n`. */
  async function changeOneByte(schema: string, index: number): Promise<void> {
    const row = await sql<{ entry: Buffer }>(`SELECT entry FROM "${schema}".ledger_entries WHERE origin = $1 AND idx = $2`, [ORIGIN, index]);
    const text = row.rows[0]!.entry.toString('utf8');
    const at = text.indexOf(`"n":${index}`) + `"n":`.length;
    const digit = text.charCodeAt(at) === 0x39 ? 0x38 : text.charCodeAt(at) + 1;
    await sql(`UPDATE "${schema}".ledger_entries SET entry = set_byte(entry, $3, $4) WHERE origin = $1 AND idx = $2`, [ORIGIN, index, at, digit]);
  }

  function cli(...args: string[]) {
    const r = spawnSync(process.execPath, [CLI, 'verify', ...args], { cwd: root, encoding: 'utf8' });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) as Record<string, any> };
  }

  it('videoteller verify --database-url passes an intact ledger and names the entry whose byte was changed', async () => {
    const { schema, jwks, keyRing, opts } = await ledgerOf(30);
    const intact = cli('--database-url', TEST_DATABASE_URL, '--pg-schema', schema, '--keys', jwks, '--json');
    expect(intact.code, intact.stderr).toBe(0);
    expect(intact.json()).toMatchObject({ ok: true, entries: 30, origin: ORIGIN, schema, checkpoints: { count: 3, verified: 3 } }); // sizes 0 (new ledger), 10, 30
    const words = cli('--database-url', TEST_DATABASE_URL, '--pg-schema', schema, '--keys', jwks);
    expect(words.stdout).toContain('result       OK');

    await changeOneByte(schema, 17);
    const bad = cli('--database-url', TEST_DATABASE_URL, '--pg-schema', schema, '--keys', jwks, '--json');
    expect(bad.code).toBe(1);
    const report = bad.json();
    expect(report.ok).toBe(false);
    expect(report.firstProblem).toMatchObject({ kind: 'frame_crc', index: 17 });
    // The final checkpoint (30) covers entry 17 and no longer matches; the one at 10 still does.
    expect(report.problems.map((p: { kind: string; index: number }) => [p.kind, p.index])).toEqual([
      ['frame_crc', 17],
      ['checkpoint_root_mismatch', 30],
    ]);
    const text = cli('--database-url', TEST_DATABASE_URL, '--pg-schema', schema, '--keys', jwks);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('FAILED: 2 problems; first: frame_crc at index 17');

    // The server reading that entry refuses it rather than serving changed evidence.
    const again = await PostgresLedger.open(opts);
    cleanups.push(() => again.close());
    await expect(again.getEntries(10, 20)).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('entry 17') });
    expect((await again.getEntries(0, 10)).length).toBe(10);
    expect(keyRing.activeKid).toBeTruthy();
  });

  it('finds an entry changed together with its stored leaf hash through the checkpoints, and the open refuses it', async () => {
    const { schema, keyRing, opts } = await ledgerOf(30);
    await changeOneByte(schema, 4);
    await sql(`UPDATE "${schema}".ledger_entries SET leaf_hash = sha256('\\x00'::bytea || entry) WHERE origin = $1 AND idx = 4`, [ORIGIN]);
    const report = await auditPostgresLedger({ databaseUrl: TEST_DATABASE_URL, schema, keys: keyRing.publicKeys() });
    expect(report.problems.map((p) => [p.kind, p.index])).toEqual([
      ['checkpoint_root_mismatch', 10],
      ['checkpoint_root_mismatch', 30],
    ]);
    await expect(PostgresLedger.open(opts)).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining('does not match') });
  });

  it('reports a deleted entry as missing and the head that no longer counts the rows', async () => {
    const { schema, keyRing } = await ledgerOf(30);
    await sql(`DELETE FROM "${schema}".ledger_entries WHERE origin = $1 AND idx = 20`, [ORIGIN]);
    const report = await auditPostgresLedger({ databaseUrl: TEST_DATABASE_URL, schema, keys: keyRing.publicKeys() });
    const kinds = report.problems.map((p) => [p.kind, p.index]);
    expect(kinds).toContainEqual(['entry_missing', 20]);
    expect(kinds).toContainEqual(['ledger_meta', 29]);
    expect(report.ok).toBe(false);
  });
});

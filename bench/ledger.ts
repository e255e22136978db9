/**
 * Ledger benchmark: every figure beside its physical limit, measured in the same run.
 *
 *   node --import tsx bench/ledger.ts
 *
 * Environment:
 *   BENCH_DIR             where the ledger and the fsync probe write (default: the OS temp dir);
 *                         put it on the disk the ledger will use
 *   BENCH_SECONDS         seconds per rate measurement (default 3)
 *   BENCH_VERIFY_ENTRIES  entries of the ledger the verifier audits (default 1000000)
 *   BENCH_QUICK=1         a quick run: 1 s per rate and 50000 entries
 *   BENCH_JSON=1          also print the figures as one JSON line
 *   DATABASE_URL          also measure the PostgreSQL backend (a fresh schema, dropped after):
 *                         durable appends at concurrency 1 and 32 beside the file backend's, as a
 *                         ratio to it, and the database's own commit rate for scale
 *
 * Limits: fdatasync rate of the same disk for durable appends (one fsync carries at most as many
 * entries as are outstanding) and the single-core cost of preparing an entry; `openssl speed`
 * (the same OpenSSL as Node's) for SHA-256 and Ed25519; for the audit, the slower of reading the
 * segments and hashing them at OpenSSL's bulk SHA-256 rate.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, writeSync, fdatasyncSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { auditLedgerDir } from '../src/ledger/audit-fs.ts';
import { webCryptoEd25519Verify } from '../src/ledger/ed25519.ts';
import { prepareEntry, encodePrepared } from '../src/ledger/entry.ts';
import { FileLedger } from '../src/ledger/file-ledger.ts';
import { KeyRing } from '../src/ledger/keyring.ts';
import { hashChildren, hashLeaf, MerkleTree } from '../src/ledger/merkle.ts';
import { nodeSha256 } from '../src/ledger/node-crypto.ts';
import { encodeFrame } from '../src/ledger/segments.ts';
import { sha256 as portableSha256 } from '../src/ledger/sha256.ts';
import { createLogger } from '../src/logger.ts';
import pg from 'pg';
import { PostgresLedger } from '../src/ledger/postgres/pg-ledger.ts';
import type { Ledger } from '../src/ledger/types.ts';

const quick = process.env.BENCH_QUICK === '1';
const SECONDS = Number(process.env.BENCH_SECONDS ?? (quick ? 1 : 3));
const VERIFY_ENTRIES = Number(process.env.BENCH_VERIFY_ENTRIES ?? (quick ? 50_000 : 1_000_000));
const baseDir = mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'vt-bench-'));
const log = createLogger('silent');

interface Figure {
  name: string;
  value: number;
  unit: string;
  limit?: number;
  limitIs?: string;
}
const figures: Figure[] = [];

function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${text}`);
}

/** Calls fn repeatedly for about `seconds`; returns calls per second. */
function rate(fn: () => void, seconds = SECONDS): number {
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < end) {
    for (let i = 0; i < 64; i++) fn();
    n += 64;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

async function rateAsync(fn: () => Promise<unknown>, seconds = SECONDS): Promise<number> {
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    await fn();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

function openssl(args: string[]): string | undefined {
  try {
    return execFileSync('openssl', ['speed', '-seconds', String(Math.max(1, Math.round(SECONDS))), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}

/** OpenSSL's SHA-256 throughput in bytes/s for messages of `bytes`. */
function opensslSha256(bytes: number): number | undefined {
  const outText = openssl(['-bytes', String(bytes), '-evp', 'sha256']);
  const m = outText && /^sha256\s+([\d.]+)k/m.exec(outText);
  return m ? Number(m[1]) * 1000 : undefined;
}

function opensslEd25519(): { sign: number; verify: number } | undefined {
  const outText = openssl(['ed25519']);
  const m = outText && /Ed25519\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)/.exec(outText);
  return m ? { sign: Number(m[1]), verify: Number(m[2]) } : undefined;
}

/** fdatasync after each 256-byte write that extends a file (what an append does), for `seconds`. */
function fsyncRate(dir: string, seconds = SECONDS): number {
  const file = path.join(dir, 'fsync-probe');
  const fd = openSync(file, 'w');
  const block = Buffer.alloc(256, 0x61);
  let pos = 0;
  let n = 0;
  const start = performance.now();
  try {
    while (performance.now() - start < seconds * 1000) {
      writeSync(fd, block, 0, block.length, pos);
      pos += block.length;
      fdatasyncSync(fd);
      n++;
    }
    return n / ((performance.now() - start) / 1000);
  } finally {
    closeSync(fd);
    rmSync(file);
  }
}

function sampleInput(i: number) {
  return {
    sessionId: `6f1c2a9e-0b7d-4c1e-9d8a-${String(i % 100_000).padStart(12, '0')}`,
    type: 'identity.face_match',
    actor: 'system',
    payload: { frameSha256: 'c3'.repeat(32), score: 0.8731, decision: 'match', threshold: 0.6, model: 'face-api-1.7.15', n: i },
  };
}

async function openBenchLedger(name: string, keyRing: KeyRing): Promise<FileLedger> {
  return FileLedger.open({ dir: path.join(baseDir, name), origin: 'bench.example/ledger', keyRing, log, checkpointIntervalMs: 1000 });
}

async function appendsAt(keyRing: KeyRing, concurrency: number, open?: () => Promise<Ledger & { stats: { commits: number; entries: number } }>): Promise<{ rate: number; perCommit: number }> {
  const ledger = open ? await open() : await openBenchLedger(`appends-${concurrency}`, keyRing);
  const size0 = ledger.size;
  let i = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const start = performance.now();
  const commits0 = ledger.stats.commits;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) await ledger.append(sampleInput(i++));
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  const perCommit = ledger.stats.entries / Math.max(1, ledger.stats.commits - commits0);
  const appended = ledger.size - size0;
  await ledger.close();
  return { rate: appended / elapsed, perCommit };
}

/** Transactions of one small INSERT each, committed one after another: the database's commit rate. */
async function pgCommitRate(url: string, schema: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE TABLE "${schema}".commit_probe (n bigint, pad bytea)`);
    const pad = Buffer.alloc(256, 0x61);
    let n = 0;
    const r = await rateAsync(async () => {
      await client.query(`INSERT INTO "${schema}".commit_probe VALUES ($1, $2)`, [n++, pad]);
    });
    await client.query(`DROP TABLE "${schema}".commit_probe`);
    return r;
  } finally {
    await client.end();
  }
}

/** The PostgreSQL backend beside the file backend, at the same concurrency (DATABASE_URL set). */
async function postgresFigures(url: string, keyRing: KeyRing): Promise<void> {
  const schema = `vt_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA "${schema}"`);
    progress('PostgreSQL commit rate…');
    const commits = await pgCommitRate(url, schema);
    figures.push({ name: 'PostgreSQL commits (one 256 B INSERT per transaction), same database', value: commits, unit: '/s' });
    const openPg = () => PostgresLedger.open({ databaseUrl: url, schema, origin: 'bench.example/ledger', keyRing, log, checkpointIntervalMs: 1000 });
    for (const c of [1, 32]) {
      progress(`file backend at concurrency ${c}…`);
      const file = await appendsAt(keyRing, c, () => FileLedger.open({ dir: path.join(baseDir, `pg-compare-${c}`), origin: 'bench.example/ledger', keyRing, log, checkpointIntervalMs: 1000 }));
      progress(`PostgreSQL backend at concurrency ${c}…`);
      const r = await appendsAt(keyRing, c, openPg);
      figures.push({
        name: `PostgreSQL durable appends, concurrency ${c} (${r.perCommit.toFixed(1)} per commit)`,
        value: r.rate,
        unit: '/s',
        limit: file.rate,
        limitIs: `file backend, same concurrency (${file.perCommit.toFixed(1)} per fsync)`,
      });
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await admin.end();
  }
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  console.log(`videoteller ledger benchmark: ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, node ${process.version}, OpenSSL ${process.versions.openssl}`);
  console.log(`dir ${baseDir}, ${SECONDS} s per rate, audit of ${VERIFY_ENTRIES} entries\n`);
  const keyRing = await KeyRing.open({ dir: path.join(baseDir, 'keys'), log });

  // ---- the disk, and durable appends -------------------------------------------------------
  progress('fsync rate…');
  const fsyncs = fsyncRate(baseDir);
  figures.push({ name: 'raw fdatasync (256 B writes), same disk', value: fsyncs, unit: '/s' });

  progress('entry preparation (CPU)…');
  let k = 0;
  const tree = new MerkleTree(nodeSha256);
  const cpuRate = rate(() => {
    const bytes = encodePrepared(prepareEntry(sampleInput(k), new Date()), k++);
    encodeFrame(bytes);
    tree.append(hashLeaf(bytes, nodeSha256));
  });
  figures.push({ name: 'entry preparation, one core (validate, JCS, frame, hash, tree)', value: cpuRate, unit: '/s' });

  // The disk's fsync rate drifts (other I/O on the machine): each append figure is measured
  // between two fsync probes and compared with their mean.
  for (const c of [1, 16, 256]) {
    progress(`durable appends at concurrency ${c}…`);
    const before = fsyncRate(baseDir, SECONDS / 2);
    const r = await appendsAt(keyRing, c);
    const after = fsyncRate(baseDir, SECONDS / 2);
    const disk = (before + after) / 2;
    const limit = Math.min(c * disk, cpuRate);
    figures.push({
      name: `durable appends, concurrency ${c} (${r.perCommit.toFixed(1)} per fsync)`,
      value: r.rate,
      unit: '/s',
      limit,
      limitIs: limit === cpuRate ? 'entry preparation on one core' : `${c} × fdatasync rate (${Math.round(disk)}/s around it)`,
    });
  }

  if (process.env.DATABASE_URL) await postgresFigures(process.env.DATABASE_URL, keyRing);

  // ---- SHA-256 --------------------------------------------------------------------------------
  progress('SHA-256…');
  const left = nodeSha256(new Uint8Array([1]));
  const right = nodeSha256(new Uint8Array([2]));
  const nodeHashes = rate(() => hashChildren(left, right, nodeSha256));
  const ossl65 = opensslSha256(65);
  figures.push({ name: 'SHA-256 Merkle node hashes (65 B), node:crypto', value: nodeHashes, unit: '/s', ...(ossl65 ? { limit: ossl65 / 65, limitIs: 'openssl speed, 65 B messages' } : {}) });
  const big = new Uint8Array(1 << 20);
  const bulk = rate(() => nodeSha256(big), SECONDS / 8) * big.length;
  const ossl16k = opensslSha256(16384);
  figures.push({ name: 'SHA-256 bulk (1 MiB), node:crypto', value: bulk / 1e6, unit: 'MB/s', ...(ossl16k ? { limit: ossl16k / 1e6, limitIs: 'openssl speed, 16 KiB blocks' } : {}) });
  const portable = rate(() => hashChildren(left, right, portableSha256), SECONDS / 2);
  figures.push({ name: 'SHA-256 Merkle node hashes, portable TS (browser verifier)', value: portable, unit: '/s', limit: nodeHashes, limitIs: 'node:crypto (native)' });

  // ---- Ed25519 --------------------------------------------------------------------------------
  progress('Ed25519…');
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const msg = Buffer.from('bench.example/ledger\n1000000\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n');
  const sig = sign(null, msg, privateKey);
  const signs = rate(() => sign(null, msg, privateKey), SECONDS / 4);
  const verifies = rate(() => verify(null, msg, publicKey, sig), SECONDS / 4);
  const raw = new Uint8Array(Buffer.from((publicKey.export({ format: 'jwk' }) as { x: string }).x, 'base64url'));
  const webVerifies = await rateAsync(async () => webCryptoEd25519Verify(raw, msg, sig), SECONDS / 2);
  const ossl = opensslEd25519();
  figures.push({ name: 'Ed25519 sign, node:crypto', value: signs, unit: '/s', ...(ossl ? { limit: ossl.sign, limitIs: 'openssl speed ed25519' } : {}) });
  figures.push({ name: 'Ed25519 verify, node:crypto', value: verifies, unit: '/s', ...(ossl ? { limit: ossl.verify, limitIs: 'openssl speed ed25519' } : {}) });
  figures.push({ name: 'Ed25519 verify, WebCrypto (browser path)', value: webVerifies, unit: '/s', ...(ossl ? { limit: ossl.verify, limitIs: 'openssl speed ed25519' } : {}) });

  // ---- the audit of a large ledger --------------------------------------------------------------
  const ledger = await openBenchLedger('verify', keyRing);
  let n = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 512 }, async () => {
      while (n < VERIFY_ENTRIES) {
        await ledger.append(sampleInput(n++));
        if (ledger.size % 10_000 === 0) progress(`building the ${VERIFY_ENTRIES}-entry ledger: ${ledger.size}`);
      }
    }),
  );
  const buildRate = ledger.size / ((performance.now() - started) / 1000);
  await ledger.close();
  const dir = path.join(baseDir, 'verify');
  const segFiles = readdirSync(path.join(dir, 'segments')).map((f) => path.join(dir, 'segments', f));
  const bytes = segFiles.reduce((s, f) => s + statSync(f).size, 0);
  progress('reading the segments…');
  const readStart = performance.now();
  for (const f of segFiles) readFileSync(f);
  const readRate = bytes / ((performance.now() - readStart) / 1000);
  progress('auditing…');
  const auditStart = performance.now();
  const report = await auditLedgerDir(dir, { keys: keyRing.publicKeys() });
  const auditSeconds = (performance.now() - auditStart) / 1000;
  if (!report.ok) throw new Error(`the benchmark ledger did not verify: ${JSON.stringify(report.firstProblem)}`);
  const perEntry = bytes / report.entries;
  const sampleText = new TextDecoder().decode(encodePrepared(prepareEntry(sampleInput(1), new Date()), 123456));
  // Hashing floor per entry: the leaf (entry + 1 byte, padded to 64-byte blocks) and one node (128 B).
  const hashedPerEntry = Math.ceil((perEntry - 8 + 1 + 9) / 64) * 64 + 128;
  const hashBound = (ossl16k ?? bulk) / hashedPerEntry;
  const readBound = readRate / perEntry;
  figures.push({
    name: `verify ${report.entries} entries (${(bytes / 1e6).toFixed(0)} MB, ${report.checkpoints.count} checkpoints)`,
    value: report.entries / auditSeconds,
    unit: 'entries/s',
    limit: Math.min(hashBound, readBound),
    limitIs: hashBound < readBound ? 'SHA-256 of every entry and node at openssl bulk speed' : 'reading the segments (page cache)',
  });
  const parseFloor = rate(() => JSON.parse(sampleText), SECONDS / 2);
  figures.push({ name: '  (JSON.parse of one entry alone, for scale)', value: parseFloor, unit: 'entries/s' });
  figures.push({ name: `building that ledger (512 concurrent appends)`, value: buildRate, unit: '/s', limit: cpuRate, limitIs: 'entry preparation on one core' });
  progress('');

  // ---- report ---------------------------------------------------------------------------------
  const fmt = (v: number) => (v >= 1e6 ? `${(v / 1e6).toFixed(2)} M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)} k` : v.toFixed(v >= 100 ? 0 : 1));
  const rows = figures.map((f) => [
    f.name,
    `${fmt(f.value)} ${f.unit}`,
    f.limit !== undefined ? `${fmt(f.limit)} ${f.unit}` : '',
    f.limit !== undefined ? (f.value / f.limit).toFixed(2) : '',
    f.limitIs ?? '',
  ]);
  const head = ['figure', 'measured', 'limit', 'ratio', 'limit is'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === 1 || i === 2 || i === 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log(`\naudit: ${auditSeconds.toFixed(1)} s for ${report.entries} entries; tree memory in the server ≈ ${((report.entries * 36) / 1e6).toFixed(0)} MB`);
  if (process.env.BENCH_JSON === '1') console.log(JSON.stringify({ figures }));
}

try {
  await main();
} finally {
  rmSync(baseDir, { recursive: true, force: true });
}

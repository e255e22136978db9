/**
 * videoteller: offline verification of the ledger and of verification records.
 *
 *   videoteller verify DIR          audit a whole ledger directory with only the public keys
 *   videoteller verify --database-url URL   the same for a PostgreSQL ledger
 *   videoteller verify-record FILE  check a record: signature, claims, entry, inclusion, checkpoint
 *   videoteller verify-bundle FILE  check a session's evidence bundle: entries, proofs, checkpoint, record, blobs
 *
 * Exit status: 0 everything holds, 1 a problem was found, 2 usage or I/O error.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { auditLedgerDir, resolveLedgerDir } from '../src/ledger/audit-fs.ts';
import { auditPostgresLedger } from '../src/ledger/postgres/audit.ts';
import { describeDatabaseUrl } from '../src/ledger/postgres/connect.ts';
import { DEFAULT_SCHEMA, SCHEMA_RE } from '../src/ledger/postgres/schema.ts';
import { ed25519Thumbprint, keysFromJwks, type LedgerPublicKey } from '../src/ledger/keys.ts';
import { nodeEd25519Verify, nodeSha256 } from '../src/ledger/node-crypto.ts';
import { parseVerifierKey } from '../src/ledger/note.ts';
import { verifyBundle, type BundleReport } from '../src/ledger/bundle.ts';
import { verifyRecord, type AuditReport } from '../src/ledger/verify.ts';

const USAGE = `usage:
  videoteller verify DIR [options]
      Audits a ledger directory (DATA_DIR/ledger, or DATA_DIR) offline: every entry's framing,
      order and form, the Merkle tree, every checkpoint's signature and root.
      --keys FILE            the bank's public keys: a JWKS (/.well-known/jwks.json) or signed-note
                             verifier keys, one per line (/api/ledger/key). Default: DIR's
                             ../keys/jwks.json, which proves integrity but not authenticity.
      --origin ORIGIN        the expected log origin (default: the ledger's own)
      --checkpoint FILE      a signed checkpoint (or record file) obtained earlier: the ledger must
                             still contain it (detects a rollback); repeatable
      --save-checkpoint FILE write the newest verified checkpoint there, for the next audit
      --allow-unsigned-tail  accept entries after the newest checkpoint (a live ledger)
  videoteller verify --database-url URL [--pg-schema SCHEMA] --keys FILE [options]
      The same audit of a PostgreSQL ledger (DATABASE_URL, LEDGER_PG_SCHEMA, default ${DEFAULT_SCHEMA}):
      every stored entry's bytes, against the leaf hash stored with it and the recomputed tree.
      --keys defaults to $LEDGER_KEYS_DIR/jwks.json or $DATA_DIR/keys/jwks.json; the other
      options are as above.
  videoteller verify-record FILE [options]
      Checks a verification record: its JWS (EdDSA, kid) with the JWKS, its claims against its own
      ledger entry, the entry's inclusion proof, and the signed checkpoint.
      --keys FILE            the JWKS (default: $DATA_DIR/keys/jwks.json)
      --origin ORIGIN        the expected log origin
      --at TIME              check expiry at this ISO 8601 time instead of now
  videoteller verify-bundle FILE [options]
      Checks a session's evidence bundle (GET /api/compliance/sessions/:id/bundle) offline: every
      entry's inclusion under the signed checkpoint, the checkpoint's signature, the record's
      signature and that its entry is in the log, every blob's SHA-256 against the entries.
      --trusted-key FILE     the bank's public keys, obtained independently (a JWKS or verifier
                             keys); alias --jwks. Without it only the keys inside the bundle are
                             used, which proves the bundle is consistent, not who made it.
      --origin ORIGIN        the expected log origin
  Every command takes --json (machine-readable output on stdout).
`;

class UsageError extends Error {}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function warn(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Loads public keys from a JWKS file or a file of signed-note verifier keys. */
function loadKeys(file: string): LedgerPublicKey[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read keys from ${file}: ${(err as Error).message}`);
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      return keysFromJwks(JSON.parse(trimmed));
    } catch (err) {
      throw new UsageError(`${file} is not a usable JWKS: ${(err as Error).message}`);
    }
  }
  try {
    return trimmed
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => {
        const k = parseVerifierKey(l);
        return { kid: ed25519Thumbprint(k.publicKey), publicKey: k.publicKey };
      });
  } catch (err) {
    throw new UsageError(`${file} is neither a JWKS nor signed-note verifier keys: ${(err as Error).message}`);
  }
}

/** A checkpoint note from a file holding one, or from a record file's `checkpoint`. */
function loadCheckpoint(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (text.trimStart().startsWith('{')) {
    try {
      const cp = (JSON.parse(text) as { checkpoint?: unknown }).checkpoint;
      if (typeof cp === 'string') return cp;
    } catch {
      // fall through
    }
    throw new UsageError(`${file} holds JSON without a "checkpoint" note`);
  }
  return text;
}

/** A one-line progress bar on stderr, only on a terminal, only once a run takes a while. */
class Progress {
  private readonly started = Date.now();
  private last = 0;
  private shown = false;
  constructor(private readonly enabled: boolean) {}

  update(done: number, total: number, entries: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.started < 500 || now - this.last < 100) return;
    this.last = now;
    this.shown = true;
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const rate = entries / ((now - this.started) / 1000);
    process.stderr.write(`\r[${bar}] ${(frac * 100).toFixed(0).padStart(3)}%  ${entries} entries  ${Math.round(rate)}/s `);
  }

  done(): void {
    if (this.shown) process.stderr.write('\r\x1b[2K');
  }
}

function printReport(dir: string, report: AuditReport, keysSource: string, elapsedMs: number): void {
  const mb = (report.bytes / 1e6).toFixed(1);
  const keys = Object.entries(report.checkpoints.byKey)
    .map(([kid, n]) => `${kid.slice(0, 12)}…×${n}`)
    .join(', ');
  out(`ledger       ${dir} (origin ${report.origin ?? 'unknown'})`);
  out(`keys         ${keysSource}`);
  const where = report.segments > 0 ? ` in ${report.segments} segment${report.segments === 1 ? '' : 's'}` : '';
  out(`entries      ${report.entries}${where}, ${mb} MB, verified in ${(elapsedMs / 1000).toFixed(1)} s`);
  out(`root         ${report.rootHash}`);
  out(
    `checkpoints  ${report.checkpoints.count} stored, ${report.checkpoints.verified} verified${keys ? ` (${keys})` : ''}` +
      (report.checkpoints.latest ? `; newest covers ${report.checkpoints.latest.size}` : ''),
  );
  if (report.trustedCheckpoints > 0) out(`trusted      ${report.trustedCheckpoints} checkpoint(s) from earlier, contained`);
  if (report.unsignedEntries > 0) out(`unsigned     ${report.unsignedEntries} entries after the newest checkpoint`);
  if (report.ok) {
    out('result       OK');
    return;
  }
  const first = report.firstProblem!;
  out(`result       FAILED: ${report.problemCount} problem${report.problemCount === 1 ? '' : 's'}; first: ${first.kind} at index ${first.index ?? '-'}`);
  for (const p of report.problems.slice(0, 10)) {
    out(`  ${p.kind.padEnd(26)} index ${String(p.index ?? '-').padEnd(8)} ${p.message}${p.file ? ` [${p.file}${p.offset !== undefined ? ` @${p.offset}` : ''}]` : ''}`);
  }
  if (report.problemCount > 10) out(`  … and ${report.problemCount - 10} more`);
}

async function verifyCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      keys: { type: 'string' },
      origin: { type: 'string' },
      checkpoint: { type: 'string', multiple: true },
      'save-checkpoint': { type: 'string' },
      'allow-unsigned-tail': { type: 'boolean', default: false },
      'no-progress': { type: 'boolean', default: false },
      'database-url': { type: 'string' },
      'pg-schema': { type: 'string' },
    },
  });
  if (values['database-url'] !== undefined) {
    if (positionals.length !== 0) throw new UsageError('verify takes a directory or --database-url, not both');
    return verifyPostgres(values as VerifyValues & { 'database-url': string });
  }
  if (values['pg-schema'] !== undefined) throw new UsageError('--pg-schema goes with --database-url');
  if (positionals.length !== 1) throw new UsageError('verify takes one directory');
  let dir: string;
  try {
    dir = await resolveLedgerDir(path.resolve(positionals[0]!));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let keysFile = values.keys;
  let keysSource: string;
  if (keysFile) {
    keysSource = path.resolve(keysFile);
  } else {
    keysFile = path.join(dir, '..', 'keys', 'jwks.json');
    if (!existsSync(keysFile)) throw new UsageError('no --keys given and no keys/jwks.json beside the ledger');
    keysSource = `${path.resolve(keysFile)} (beside the ledger: proves integrity, not authenticity; pass --keys)`;
    if (!values.json) warn(`warning: keys taken from ${path.resolve(keysFile)}, beside the ledger; pass --keys with the bank's published JWKS to prove authenticity`);
  }
  return runAudit(values, keysFile, keysSource, (opts) => auditLedgerDir(dir, opts), { dir }, dir);
}

type AuditRunOptions = Parameters<typeof auditLedgerDir>[1];

/**
 * The audit both `verify DIR` and `verify --database-url` run: the keys, the trusted checkpoints,
 * progress, `--save-checkpoint`, and the report (JSON or text). Exit 0 when the log verifies.
 */
async function runAudit(
  values: VerifyValues,
  keysFile: string,
  keysSource: string,
  audit: (opts: AuditRunOptions) => Promise<AuditReport>,
  jsonHead: Record<string, unknown>,
  source: string,
): Promise<number> {
  const keys = loadKeys(keysFile);
  if (keys.length === 0) throw new UsageError(`${keysFile} holds no Ed25519 key`);
  const trusted = (values.checkpoint ?? []).map((f) => ({ note: loadCheckpoint(f), label: path.basename(f) }));
  const progress = new Progress(Boolean(process.stderr.isTTY) && !values['no-progress']);
  const started = Date.now();
  let report: AuditReport;
  try {
    report = await audit({
      keys,
      ...(values.origin ? { origin: values.origin } : {}),
      allowUnsignedTail: values['allow-unsigned-tail'],
      trusted,
      onProgress: (done, total, entries) => progress.update(done, total, entries),
    });
  } finally {
    progress.done();
  }
  const elapsedMs = Date.now() - started;
  if (report.ok && values['save-checkpoint'] && report.checkpoints.latest) {
    writeFileSync(values['save-checkpoint'], report.checkpoints.latest.note);
  }
  if (values.json) out(JSON.stringify({ command: 'verify', ...jsonHead, keys: keysSource, elapsedMs, ...report }, null, 2));
  else printReport(source, report, keysSource, elapsedMs);
  return report.ok ? 0 : 1;
}

interface VerifyValues {
  json: boolean;
  keys?: string;
  origin?: string;
  checkpoint?: string[];
  'save-checkpoint'?: string;
  'allow-unsigned-tail': boolean;
  'no-progress': boolean;
  'pg-schema'?: string;
}

/** `verify --database-url`: the audit of a PostgreSQL ledger, reported like a directory's. */
async function verifyPostgres(values: VerifyValues & { 'database-url': string }): Promise<number> {
  const url = values['database-url'];
  let where: string;
  try {
    const u = new URL(url);
    if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error('not postgres');
    where = describeDatabaseUrl(url);
  } catch {
    throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  }
  const schema = values['pg-schema'] ?? DEFAULT_SCHEMA;
  if (!SCHEMA_RE.test(schema)) throw new UsageError(`--pg-schema ${JSON.stringify(schema)} is not a schema name (lower-case letters, digits and _)`);
  let keysFile = values.keys;
  let keysSource: string;
  if (keysFile) {
    keysSource = path.resolve(keysFile);
  } else {
    keysFile = path.join(process.env.LEDGER_KEYS_DIR ?? path.join(process.env.DATA_DIR ?? './data', 'keys'), 'jwks.json');
    if (!existsSync(keysFile)) throw new UsageError('no --keys given and no jwks.json in $LEDGER_KEYS_DIR or $DATA_DIR/keys');
    keysSource = `${path.resolve(keysFile)} (the node's own: proves integrity, not authenticity; pass --keys)`;
    if (!values.json) warn(`warning: keys taken from ${path.resolve(keysFile)}; pass --keys with the bank's published JWKS to prove authenticity`);
  }
  return runAudit(values, keysFile, keysSource, (opts) => auditPostgresLedger({ databaseUrl: url, schema, ...opts }), { database: where, schema }, `${where} schema ${schema}`);
}

async function verifyRecordCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      keys: { type: 'string' },
      origin: { type: 'string' },
      at: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('verify-record takes one file');
  const file = positionals[0]!;
  let keysFile = values.keys;
  if (!keysFile) {
    keysFile = path.join(process.env.DATA_DIR ?? './data', 'keys', 'jwks.json');
    if (!existsSync(keysFile)) throw new UsageError('no --keys given and no $DATA_DIR/keys/jwks.json');
    if (!values.json) warn(`warning: keys taken from ${path.resolve(keysFile)}; pass --keys with the bank's published JWKS`);
  }
  const keys = loadKeys(keysFile);
  let now = new Date();
  if (values.at !== undefined) {
    now = new Date(values.at);
    if (Number.isNaN(now.getTime())) throw new UsageError(`--at ${values.at} is not a date`);
  }
  let bundle: unknown;
  try {
    bundle = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${file} does not exist`);
    bundle = undefined; // not JSON: reported as malformed below
  }
  const res = await verifyRecord(bundle, { keys, now, sha256: nodeSha256, ed25519Verify: nodeEd25519Verify, ...(values.origin ? { origin: values.origin } : {}) });
  if (values.json) {
    out(JSON.stringify({ command: 'verify-record', file, at: now.toISOString(), ...res }, null, 2));
  } else if (res.ok) {
    const c = res.claims;
    out(`record       ${c.jti}: ${c.decision} for session ${c.sessionId} (${c.businessType}, customer ${c.customerRef}, teller ${c.tellerId})`);
    out(`signed       EdDSA by key ${res.kid}`);
    out(`ledger       entry ${c.ledgerIndex} of ${res.checkpoint.origin}, included in the signed checkpoint of size ${res.checkpoint.size}`);
    out(`valid        ${new Date(c.iat * 1000).toISOString()} to ${new Date(c.exp * 1000).toISOString()}`);
    out('result       OK');
  } else {
    out(`result       FAILED: ${res.problem.kind}: ${res.problem.message}`);
  }
  return res.ok ? 0 : 1;
}

function printBundleReport(file: string, r: BundleReport, trustedSource: string | undefined): void {
  const mark = (ok: boolean) => (ok ? 'ok  ' : 'FAIL');
  const m = r.manifest;
  out(`bundle       ${file}: session ${r.sessionId || '?'}, ${r.entries.length} entries, origin ${r.origin || '?'}${m ? `, made ${m.createdAt} by ${m.createdBy}` : ''}`);
  const bundled = m ? 'jwks.json inside the bundle' : '-';
  if (trustedSource) {
    out(`keys         trusted keys from ${trustedSource} (the bundle's own ${bundled} were not relied on)`);
  } else {
    out(`keys         ${bundled} ONLY: this proves the bundle is internally consistent, not who made it;`);
    out(`             pass --trusted-key with the bank's published JWKS to prove its origin`);
  }
  const cp = r.checkpoint;
  out(
    `checkpoint   ${mark(cp.ok)} ${cp.ok ? `size ${cp.size}, root ${cp.rootHash}, signed by ${cp.signedBy.join(', ')} (${cp.keys === 'trusted' ? 'trusted key' : 'bundled key'})` : cp.problem?.message ?? ''}`,
  );
  out('entries');
  for (const e of r.entries) {
    out(`  ${mark(e.ok)} #${String(e.index).padEnd(8)} ${(e.time ?? '-').padEnd(24)} ${(e.type ?? '?').padEnd(28)} ${e.actor ?? ''}${e.problem ? `\n         ${e.problem.kind}: ${e.problem.message}` : ''}`);
  }
  if (r.record) {
    const rec = r.record;
    out(
      rec.ok
        ? `record       ok   ${rec.jti}: ${rec.decision} by ${rec.tellerId}, JWS signed by ${rec.kid}; its entry #${rec.index} is in the log; its checkpoint (size ${rec.checkpointSize}) is consistent with the bundle's`
        : `record       FAIL ${rec.problem?.kind}: ${rec.problem?.message}`,
    );
  } else {
    out('record       none in the bundle');
  }
  if (r.blobs.length) out('blobs');
  for (const b of r.blobs) {
    out(`  ${mark(b.ok)} ${b.kind.padEnd(15)} ${b.sha256} ${b.bytes !== undefined ? `${b.bytes} bytes` : ''} named by #${b.entryIndex}${b.problem ? `\n         ${b.problem.kind}: ${b.problem.message}` : ''}`);
  }
  if (r.extraFiles.length) out(`extra files  ${r.extraFiles.join(', ')} (not in the manifest, not checked)`);
  for (const p of r.problems.filter((x) => x.index === undefined && x.kind !== 'blob_missing' && !x.sha256)) {
    if (p !== cp.problem && p !== r.record?.problem) out(`problem      ${p.kind}: ${p.message}`);
  }
  out(r.ok ? 'result       OK' : `result       FAILED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}; first: ${r.problems[0]!.kind}${r.problems[0]!.index !== undefined ? ` at entry ${r.problems[0]!.index}` : ''}`);
}

async function verifyBundleCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      'trusted-key': { type: 'string' },
      jwks: { type: 'string' },
      origin: { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('verify-bundle takes one file');
  if (values['trusted-key'] && values.jwks) throw new UsageError('give --trusted-key or --jwks, not both');
  const file = positionals[0]!;
  const keysFile = values['trusted-key'] ?? values.jwks;
  const trustedKeys = keysFile ? loadKeys(keysFile) : undefined;
  if (trustedKeys && trustedKeys.length === 0) throw new UsageError(`${keysFile} holds no Ed25519 key`);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const report = await verifyBundle(bytes, {
    ...(trustedKeys ? { trustedKeys } : {}),
    ...(values.origin ? { origin: values.origin } : {}),
    sha256: nodeSha256,
    ed25519Verify: nodeEd25519Verify,
  });
  if (values.json) {
    const { manifest: _m, ...rest } = report;
    const entries = rest.entries.map(({ entry: _e, ...x }) => x);
    out(JSON.stringify({ command: 'verify-bundle', file, trustedKeys: keysFile ? path.resolve(keysFile) : null, ...rest, entries }, null, 2));
  } else {
    printBundleReport(file, report, keysFile ? path.resolve(keysFile) : undefined);
  }
  return report.ok ? 0 : 1;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'verify':
        return await verifyCommand(rest);
      case 'verify-record':
        return await verifyRecordCommand(rest);
      case 'verify-bundle':
        return await verifyBundleCommand(rest);
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return 0;
      default:
        throw new UsageError(command ? `unknown command ${command}` : 'a command is needed');
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      warn(`videoteller: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    warn(`videoteller: ${(err as Error).stack ?? String(err)}`);
    return 2;
  }
}

process.exitCode = await main(process.argv.slice(2));

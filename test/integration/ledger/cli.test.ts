/**
 * The `videoteller` command as users run it (bin/videoteller.mjs through node), on real ledger
 * directories and record files.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { issueRecord, type IssuedRecord } from '../../../src/ledger/records.ts';
import { FRAME_OVERHEAD, HEADER_BYTES, scanFrames } from '../../../src/ledger/segments.ts';
import { entryInput, silentLogger, tempDir } from '../../unit/ledger/helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const CLI = path.join(root, 'bin/videoteller.mjs');
const ORIGIN = 'bank.example/ledger';

let tmp: ReturnType<typeof tempDir>;
let dataDir: string;
let jwks: string;
let recordFile: string;
let record: IssuedRecord;
let earlyCheckpoint: string;

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, DATA_DIR: dataDir } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json: () => JSON.parse(r.stdout) as Record<string, any> };
}

beforeAll(async () => {
  tmp = tempDir('vt-cli-');
  dataDir = path.join(tmp.dir, 'data');
  const log = silentLogger();
  const keyRing = await KeyRing.open({ dir: path.join(dataDir, 'keys'), log });
  const ledger = await FileLedger.open({ dir: path.join(dataDir, 'ledger'), origin: ORIGIN, keyRing, log, checkpointIntervalMs: 60_000 });
  for (let i = 0; i < 40; i++) await ledger.append(entryInput(i));
  earlyCheckpoint = path.join(tmp.dir, 'early.checkpoint');
  writeFileSync(earlyCheckpoint, (await ledger.checkpoint()).note);
  record = await issueRecord({ ledger, keyRing, ttlSeconds: 3600 }, {
    decision: 'approved',
    sessionId: 'session-1',
    customerRef: 'CUST-0001',
    businessType: 'corporate_account_opening',
    tellerId: 'alice',
    evidence: { faceMatch: { score: 0.91, decision: 'match' }, liveness: { outcome: 'passed' } },
  });
  await ledger.close();
  // What an auditor holds: the published JWKS, copied away from the data directory.
  jwks = path.join(tmp.dir, 'bank-jwks.json');
  cpSync(path.join(dataDir, 'keys', 'jwks.json'), jwks);
  recordFile = path.join(tmp.dir, 'record.json');
  writeFileSync(recordFile, JSON.stringify(record, null, 2));
});
afterAll(() => tmp?.remove());

describe('videoteller verify DIR', () => {
  it('passes an intact ledger, in words and in JSON', () => {
    const text = cli('verify', path.join(dataDir, 'ledger'), '--keys', jwks);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('entries      41 in 1 segment');
    expect(text.stdout).toMatch(/result\s+OK/);
    const json = cli('verify', path.join(dataDir, 'ledger'), '--keys', jwks, '--json');
    expect(json.code).toBe(0);
    expect(json.json()).toMatchObject({ command: 'verify', ok: true, origin: ORIGIN, entries: 41, problemCount: 0, checkpoints: { latest: { size: 41 } } });
  });

  it('accepts the data directory, and the keys beside it with a warning', () => {
    const r = cli('verify', dataDir);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('warning: keys taken from');
  });

  it('accepts signed-note verifier keys (as /api/ledger/key serves them)', async () => {
    const ring = await KeyRing.open({ dir: path.join(dataDir, 'keys'), log: silentLogger() });
    const vkeys = path.join(tmp.dir, 'vkeys.txt');
    writeFileSync(vkeys, ring.verifierKeys(ORIGIN).map((k) => k.vkey).join('\n') + '\n');
    expect(cli('verify', dataDir, '--keys', vkeys, '--json').json()).toMatchObject({ ok: true });
  });

  it('fails with exit 1 and names the first problem of a tampered copy', () => {
    const copy = path.join(tmp.dir, 'tampered');
    cpSync(path.join(dataDir, 'ledger'), copy, { recursive: true });
    const seg = path.join(copy, 'segments', readdirSync(path.join(copy, 'segments'))[0]!);
    const buf = readFileSync(seg);
    const frame = scanFrames(buf, HEADER_BYTES, 1 << 20).frames[17]!;
    buf[frame.offset + FRAME_OVERHEAD + 3] = buf[frame.offset + FRAME_OVERHEAD + 3]! ^ 0x20;
    writeFileSync(seg, buf);
    const text = cli('verify', copy, '--keys', jwks);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/result\s+FAILED: \d+ problems?; first: frame_crc at index 17/);
    const json = cli('verify', copy, '--keys', jwks, '--json');
    expect(json.code).toBe(1);
    expect(json.json().firstProblem).toMatchObject({ kind: 'frame_crc', index: 17, file: seg, offset: frame.offset });
  });

  it('with a checkpoint kept from before, catches a rollback; and saves the newest for next time', () => {
    const saved = path.join(tmp.dir, 'latest.checkpoint');
    expect(cli('verify', dataDir, '--keys', jwks, '--save-checkpoint', saved).code).toBe(0);
    expect(readFileSync(saved, 'utf8')).toBe(record.checkpoint);
    // The record file works as a trusted checkpoint too.
    expect(cli('verify', dataDir, '--keys', jwks, '--checkpoint', earlyCheckpoint, '--checkpoint', recordFile).code).toBe(0);
    // Rolled back to a copy from before the record was issued: caught.
    const old = path.join(tmp.dir, 'rolled-back');
    cpSync(path.join(dataDir, 'ledger'), old, { recursive: true });
    const seg = path.join(old, 'segments', readdirSync(path.join(old, 'segments'))[0]!);
    const buf = readFileSync(seg);
    const frames = scanFrames(buf, HEADER_BYTES, 1 << 20).frames;
    writeFileSync(seg, buf.subarray(0, frames[40]!.offset));
    const cps = path.join(old, 'checkpoints.log');
    const cpBuf = readFileSync(cps);
    const cpFrames = scanFrames(cpBuf, HEADER_BYTES, 1 << 16).frames;
    writeFileSync(cps, cpBuf.subarray(0, cpFrames.at(-1)!.offset));
    expect(cli('verify', old, '--keys', jwks).code).toBe(0);
    const r = cli('verify', old, '--keys', jwks, '--checkpoint', saved, '--json');
    expect(r.code).toBe(1);
    expect(r.json().firstProblem).toMatchObject({ kind: 'rollback', index: 40 });
  });

  it('gives exit 2 with usage for bad invocations', () => {
    for (const args of [[], ['frobnicate'], ['verify'], ['verify', '/nonexistent/dir'], ['verify', dataDir, '--bogus'], ['verify', dataDir, '--keys', '/nonexistent.json']]) {
      const r = cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('usage:');
    }
    expect(cli('help').code).toBe(0);
  });
});

describe('videoteller verify-record FILE', () => {
  it('passes a valid record', () => {
    const text = cli('verify-record', recordFile, '--keys', jwks);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`record       ${record.claims.jti}: approved for session session-1`);
    expect(text.stdout).toMatch(/result\s+OK/);
    expect(cli('verify-record', recordFile, '--keys', jwks, '--json').json()).toMatchObject({ ok: true, kid: record.kid, claims: { ledgerIndex: 40 } });
  });

  it('fails an expired record, a changed one, and one checked against other keys', async () => {
    const later = new Date((record.claims.exp + 1) * 1000).toISOString();
    expect(cli('verify-record', recordFile, '--keys', jwks, '--at', later, '--json').json()).toMatchObject({ ok: false, problem: { kind: 'expired' } });
    const changed = path.join(tmp.dir, 'changed.json');
    const [h, p, s] = record.jws.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    payload.customerRef = 'CUST-9999';
    writeFileSync(changed, JSON.stringify({ ...record, jws: `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}` }));
    const r = cli('verify-record', changed, '--keys', jwks);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('FAILED: signature');
    const otherDir = path.join(tmp.dir, 'other-keys');
    await KeyRing.open({ dir: otherDir, log: silentLogger() });
    expect(cli('verify-record', recordFile, '--keys', path.join(otherDir, 'jwks.json'), '--json').json()).toMatchObject({ ok: false, problem: { kind: 'unknown_key' } });
    const notJson = path.join(tmp.dir, 'garbage.json');
    writeFileSync(notJson, 'not json');
    expect(cli('verify-record', notJson, '--keys', jwks, '--json').json()).toMatchObject({ ok: false, problem: { kind: 'malformed' } });
  });

  it('takes the keys from $DATA_DIR by default, and gives exit 2 for bad invocations', () => {
    expect(cli('verify-record', recordFile).code).toBe(0);
    expect(cli('verify-record').code).toBe(2);
    expect(cli('verify-record', '/nonexistent.json', '--keys', jwks).code).toBe(2);
    expect(cli('verify-record', recordFile, '--keys', jwks, '--at', 'yesterday').code).toBe(2);
  });
});

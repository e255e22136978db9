import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import path from 'node:path';
import { createLocalJWKSet, jwtVerify, SignJWT } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromBase64, toBase64 } from '../../../src/ledger/bytes.ts';
import { formatCheckpoint, parseCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { EntryInputError } from '../../../src/ledger/entry.ts';
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { hashLeaf, verifyInclusion } from '../../../src/ledger/merkle.ts';
import { nodeEd25519Verify, nodeSha256 } from '../../../src/ledger/node-crypto.ts';
import { parseNote, signNote } from '../../../src/ledger/note.ts';
import type { RecordInput } from '../../../src/ledger/record-claims.ts';
import { issueRecord, type IssuedRecord } from '../../../src/ledger/records.ts';
import { verifyRecord } from '../../../src/ledger/verify.ts';
import { entryInput, silentLogger, tempDir } from './helpers.ts';

const ORIGIN = 'bank.example/ledger';
const input: RecordInput = {
  decision: 'approved',
  sessionId: '4d1f6a52-3c1b-4b8e-9a57-6f0f0f1d2e3a',
  customerRef: 'CUST-0001',
  businessType: 'corporate_account_opening',
  tellerId: 'alice',
  evidence: {
    faceMatch: { score: 0.87, decision: 'match', threshold: 0.6 },
    liveness: { outcome: 'passed', challenges: 2 },
    document: { captured: true, type: 'passport', imageSha256: 'a'.repeat(64) },
    recording: { sha256: 'b'.repeat(64), bytes: 550_000, durationMs: 4000, startedAt: 1_790_000_000_000, endedAt: 1_790_000_004_000 },
    oneTimeCode: { result: 'verified', attempts: 1 },
  },
  approvals: [{ role: 'teller', staffId: 'alice', decision: 'approved', at: 1_790_000_004_000, entryIndex: 3 }],
};

let tmp: ReturnType<typeof tempDir>;
let keyRing: KeyRing;
let ledger: FileLedger;
let record: IssuedRecord;
const now = new Date('2026-03-01T10:00:00Z');

beforeEach(async () => {
  tmp = tempDir();
  keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log: silentLogger() });
  ledger = await FileLedger.open({ dir: path.join(tmp.dir, 'ledger'), origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000 });
  for (let i = 0; i < 5; i++) await ledger.append(entryInput(i, input.sessionId));
  record = await issueRecord({ ledger, keyRing, ttlSeconds: 3600, now: () => now }, input);
});
afterEach(async () => {
  await ledger.close();
  tmp.remove();
});

const opts = () => ({ keys: keyRing.jwks(), now: new Date(now.getTime() + 1000), sha256: nodeSha256, ed25519Verify: nodeEd25519Verify });
const bundle = (r: IssuedRecord = record) => JSON.parse(JSON.stringify({ ...r, claims: undefined, kid: undefined })) as Record<string, unknown>;

/** Replaces the JWS payload, keeping header and signature. */
function withPayload(jws: string, change: (p: Record<string, unknown>) => void): string {
  const [h, p, s] = jws.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  change(payload);
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
}

describe('issuing a verification record', () => {
  it('signs every claim, names its own ledger entry, and returns an inclusion proof to a signed checkpoint', async () => {
    expect(record.index).toBe(5);
    expect(record.claims).toMatchObject({
      ...input,
      iss: ORIGIN,
      sub: input.sessionId,
      iat: now.getTime() / 1000,
      exp: now.getTime() / 1000 + 3600,
      ledgerIndex: 5,
    });
    expect(record.claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    const [entry] = await ledger.getEntries(5, 6);
    expect(record.entry).toBe(new TextDecoder().decode(entry!.bytes));
    expect(entry!.entry).toMatchObject({ type: 'record.issued', actor: 'alice', sessionId: input.sessionId, payload: { kid: keyRing.activeKid } });
    const cp = parseCheckpoint(parseNote(record.checkpoint).text);
    expect(cp.size).toBeGreaterThanOrEqual(6);
    expect(verifyInclusion(5, cp.size, hashLeaf(entry!.bytes, nodeSha256), record.inclusionProof.map(fromBase64), cp.rootHash, nodeSha256)).toBe(true);
    expect((await ledger.entriesOf(input.sessionId)).map((e) => e.type).at(-1)).toBe('record.issued');
  });

  it('verifies with a plain JOSE library and the JWKS alone', async () => {
    const { payload, protectedHeader } = await jwtVerify(record.jws, createLocalJWKSet(keyRing.jwks()), { currentDate: now, algorithms: ['EdDSA'] });
    expect(protectedHeader).toEqual({ alg: 'EdDSA', kid: keyRing.activeKid, typ: 'vt-record+jwt' });
    expect(payload).toMatchObject({ decision: 'approved', sessionId: input.sessionId, customerRef: 'CUST-0001', ledgerIndex: 5, evidence: input.evidence });
  });

  it('verifies with nothing but node:crypto and the JWK (no JOSE library at all)', () => {
    const [h, p, s] = record.jws.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { kid: string; alg: string };
    const jwk = keyRing.jwks().keys.find((k) => k.kid === header.kid)!;
    const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
    expect(header.alg).toBe('EdDSA');
    expect(nodeVerify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))).toBe(true);
    expect(nodeVerify(null, Buffer.from(`${h}.${p}x`), key, Buffer.from(s, 'base64url'))).toBe(false);
  });

  it('passes the full verifier (JWS, claims, entry, inclusion, checkpoint), with WebCrypto as in a browser', async () => {
    const res = await verifyRecord(bundle(), { keys: keyRing.jwks(), now, origin: ORIGIN });
    expect(res).toMatchObject({ ok: true, kid: keyRing.activeKid, claims: { ledgerIndex: 5, decision: 'approved' }, checkpoint: { origin: ORIGIN } });
  });

  it('still verifies after the key is rotated', async () => {
    await keyRing.rotate();
    const later = await issueRecord({ ledger, keyRing, ttlSeconds: 3600, now: () => now }, { ...input, decision: 'rejected', reason: 'face mismatch' });
    for (const r of [record, later]) expect((await verifyRecord(bundle(r), opts())).ok).toBe(true);
    expect(later.kid).not.toBe(record.kid);
  });

  it('refuses input outside the record schema', async () => {
    const deps = { ledger, keyRing, ttlSeconds: 60 };
    await expect(issueRecord(deps, { ...input, decision: 'maybe' as 'approved' })).rejects.toThrow(EntryInputError);
    await expect(issueRecord(deps, { ...input, evidence: { document: { captured: true, image: 'AAAA' } } as never })).rejects.toThrow(EntryInputError);
    await expect(issueRecord(deps, { ...input, evidence: { recording: { ...input.evidence.recording!, sha256: 'not-a-hash' } } })).rejects.toThrow('recording');
    await expect(issueRecord({ ...deps, ttlSeconds: 0 }, input)).rejects.toThrow(RangeError);
  });
});

describe('verifying a record fails, naming why, when', () => {
  it('a claim was changed', async () => {
    const jws = withPayload(record.jws, (p) => (p.decision = 'rejected'));
    expect(await verifyRecord({ ...bundle(), jws }, opts())).toMatchObject({ ok: false, problem: { kind: 'signature' } });
  });

  it('it was signed by another key (unknown kid, or a known kid forged)', async () => {
    const other = await KeyRing.open({ dir: path.join(tmp.dir, 'other-keys'), log: silentLogger() });
    expect(await verifyRecord(bundle(), { ...opts(), keys: other.jwks() })).toMatchObject({ ok: false, problem: { kind: 'unknown_key' } });
    const forged = await new SignJWT(record.claims)
      .setProtectedHeader({ alg: 'EdDSA', kid: keyRing.activeKid, typ: 'vt-record+jwt' })
      .sign((other as unknown as { activeKey: { privateKey: Parameters<SignJWT['sign']>[0] } }).activeKey.privateKey);
    expect(await verifyRecord({ ...bundle(), jws: forged }, opts())).toMatchObject({ ok: false, problem: { kind: 'signature' } });
  });

  it('it has expired', async () => {
    const res = await verifyRecord(bundle(), { ...opts(), now: new Date(now.getTime() + 3601_000) });
    expect(res).toMatchObject({ ok: false, problem: { kind: 'expired' } });
  });

  it('its proof does not match the checkpoint', async () => {
    const proof = [...record.inclusionProof];
    const first = fromBase64(proof[0]!);
    first[0] = first[0]! ^ 1;
    proof[0] = toBase64(first);
    expect(await verifyRecord({ ...bundle(), inclusionProof: proof }, opts())).toMatchObject({ ok: false, problem: { kind: 'inclusion' } });
    expect(await verifyRecord({ ...bundle(), inclusionProof: proof.slice(1) }, opts())).toMatchObject({ ok: false, problem: { kind: 'inclusion' } });
    // A genuine checkpoint, but of a tree the entry is not in.
    const early = await signNote(formatCheckpoint({ origin: ORIGIN, size: 3, rootHash: await ledger.rootHash(3), extensions: [] }), [keyRing.noteSigner(ORIGIN)]);
    expect(await verifyRecord({ ...bundle(), checkpoint: early }, opts())).toMatchObject({ ok: false, problem: { kind: 'inclusion' } });
  });

  it('its checkpoint is signed by another key or edited', async () => {
    const other = await KeyRing.open({ dir: path.join(tmp.dir, 'other-keys'), log: silentLogger() });
    const cp = parseCheckpoint(parseNote(record.checkpoint).text);
    const forged = await signNote(formatCheckpoint(cp), [other.noteSigner(ORIGIN)]);
    expect(await verifyRecord({ ...bundle(), checkpoint: forged }, opts())).toMatchObject({ ok: false, problem: { kind: 'checkpoint_signature' } });
    const edited = record.checkpoint.replace(`\n${cp.size}\n`, `\n${cp.size + 1}\n`);
    expect(await verifyRecord({ ...bundle(), checkpoint: edited }, opts())).toMatchObject({ ok: false, problem: { kind: 'checkpoint_signature' } });
  });

  it('its ledger entry is not the one the record names', async () => {
    const [other] = await ledger.getEntries(2, 3);
    expect(await verifyRecord({ ...bundle(), entry: new TextDecoder().decode(other!.bytes) }, opts())).toMatchObject({ ok: false, problem: { kind: 'entry_mismatch' } });
    const changed = record.entry.replace('"decision":"approved"', '"decision":"rejected"');
    expect(await verifyRecord({ ...bundle(), entry: changed }, opts())).toMatchObject({ ok: false, problem: { kind: 'entry_mismatch' } });
    expect(await verifyRecord({ ...bundle(), index: 4 }, opts())).toMatchObject({ ok: false, problem: { kind: 'entry_mismatch' } });
  });

  it('it comes from another log, or is not a record at all', async () => {
    expect(await verifyRecord(bundle(), { ...opts(), origin: 'other.example/ledger' })).toMatchObject({ ok: false, problem: { kind: 'origin' } });
    expect(await verifyRecord({ jws: record.jws }, opts())).toMatchObject({ ok: false, problem: { kind: 'malformed' } });
    expect(await verifyRecord('nonsense', opts())).toMatchObject({ ok: false, problem: { kind: 'malformed' } });
  });
});

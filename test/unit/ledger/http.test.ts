import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StaffTokens } from '../../../src/auth/staff-tokens.ts';
import { requireStaff } from '../../../src/http/auth.ts';
import { installErrorHandler } from '../../../src/http/errors.ts';
import { ledgerRoutes, MAX_ENTRIES_PER_PAGE } from '../../../src/http/ledger.ts';
import { fromBase64, toBase64 } from '../../../src/ledger/bytes.ts';
import { openCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { keysFromJwks } from '../../../src/ledger/keys.ts';
import { hashLeaf, verifyConsistency, verifyInclusion } from '../../../src/ledger/merkle.ts';
import { nodeSha256 } from '../../../src/ledger/node-crypto.ts';
import { parseVerifierKey } from '../../../src/ledger/note.ts';
import { issueRecord } from '../../../src/ledger/records.ts';
import { entryInput, silentLogger, tempDir } from './helpers.ts';

const ORIGIN = 'bank.example/ledger';
let tmp: ReturnType<typeof tempDir>;
let app: FastifyInstance;
let ledger: FileLedger;
let keyRing: KeyRing;
let compliance: string;
let teller: string;

beforeAll(async () => {
  tmp = tempDir();
  keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log: silentLogger() });
  ledger = await FileLedger.open({ dir: path.join(tmp.dir, 'ledger'), origin: ORIGIN, keyRing, log: silentLogger(), checkpointIntervalMs: 60_000 });
  for (let i = 0; i < 30; i++) await ledger.append(entryInput(i));
  await ledger.checkpoint();
  const staffTokens = new StaffTokens('x'.repeat(43), 3600);
  const skills = { businessTypes: [], languages: [] };
  compliance = (await staffTokens.issue({ id: 'carol', displayName: 'Carol', role: 'compliance', skills })).token;
  teller = (await staffTokens.issue({ id: 'alice', displayName: 'Alice', role: 'teller', skills })).token;
  app = Fastify({ logger: false });
  installErrorHandler(app);
  await app.register(ledgerRoutes, { ledger, keyRing, requireRole: requireStaff(staffTokens, ['compliance']) });
  await app.ready();
});
afterAll(async () => {
  await app?.close();
  await ledger?.close();
  tmp?.remove();
});

const get = async (url: string, token?: string) => {
  const res = await app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.statusCode, headers: res.headers, text: res.body, json: () => res.json() as Record<string, any> };
};

describe('public ledger endpoints', () => {
  it('publishes the JWKS, with which a record verifies', async () => {
    const res = await get('/.well-known/jwks.json');
    expect(res.status).toBe(200);
    expect(res.json()).toEqual(keyRing.jwks());
    const record = await issueRecord({ ledger, keyRing, ttlSeconds: 600 }, {
      decision: 'approved',
      sessionId: 'session-r',
      customerRef: 'C-1',
      businessType: 'consultation',
      tellerId: 'alice',
      evidence: {},
    });
    await expect(jwtVerify(record.jws, createLocalJWKSet(res.json() as never))).resolves.toBeTruthy();
  });

  it('publishes the checkpoint verifier key', async () => {
    const res = await get('/api/ledger/key');
    const body = res.json();
    expect(body.origin).toBe(ORIGIN);
    const key = parseVerifierKey(body.vkey);
    expect(key.name).toBe(ORIGIN);
    expect(body.keys).toEqual([{ kid: keyRing.activeKid, status: 'active', vkey: body.vkey }]);
    const cp = await get('/api/ledger/checkpoint');
    expect(cp.headers['content-type']).toBe('text/plain; charset=utf-8');
    await expect(openCheckpoint(cp.text, [key], { origin: ORIGIN })).resolves.toMatchObject({ size: ledger.latestCheckpoint()!.size });
  });

  it('serves the latest checkpoint as JSON too', async () => {
    const body = (await get('/api/ledger/checkpoint?format=json')).json();
    const cp = ledger.latestCheckpoint()!;
    expect(body).toEqual({ origin: ORIGIN, treeSize: cp.size, rootHash: toBase64(cp.rootHash), note: cp.note });
  });

  it('serves inclusion proofs that verify against the checkpoint, by default for its tree size', async () => {
    const cp = ledger.latestCheckpoint()!;
    const res = await get('/api/ledger/proof/inclusion?index=7');
    expect(res.status).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ index: 7, treeSize: cp.size, checkpoint: cp.note });
    const [stored] = await ledger.getEntries(7, 8);
    expect(body.leafHash).toBe(toBase64(hashLeaf(stored!.bytes, nodeSha256)));
    expect(verifyInclusion(7, cp.size, fromBase64(body.leafHash), body.proof.map(fromBase64), cp.rootHash, nodeSha256)).toBe(true);
    const fixed = await get('/api/ledger/proof/inclusion?index=3&treeSize=10');
    expect(fixed.headers['cache-control']).toContain('immutable');
    expect(verifyInclusion(3, 10, fromBase64(fixed.json().leafHash), fixed.json().proof.map(fromBase64), await ledger.rootHash(10), nodeSha256)).toBe(true);
  });

  it('serves consistency proofs that verify', async () => {
    const body = (await get('/api/ledger/proof/consistency?first=10&second=25')).json();
    expect(verifyConsistency(10, 25, body.proof.map(fromBase64), await ledger.rootHash(10), await ledger.rootHash(25), nodeSha256)).toBe(true);
    const latest = (await get('/api/ledger/proof/consistency?first=4')).json();
    expect(latest.second).toBe(ledger.latestCheckpoint()!.size);
  });
});

describe('entries (compliance only)', () => {
  it('are refused without a token, and with a teller token', async () => {
    expect((await get('/api/ledger/entries?start=0')).json()).toEqual({ error: { code: 'unauthorized', message: 'a staff token is required' } });
    const res = await get('/api/ledger/entries?start=0', teller);
    expect(res.status).toBe(403);
    expect(res.json().error.code).toBe('forbidden');
  });

  it('are served by range to compliance, with leaf hashes', async () => {
    const res = await get('/api/ledger/entries?start=5&end=9', compliance);
    expect(res.status).toBe(200);
    const body = res.json();
    expect(body.entries.map((e: { index: number }) => e.index)).toEqual([5, 6, 7, 8]);
    expect(body.entries[0].entry).toMatchObject({ index: 5, type: 'test.event', payload: { n: 5 } });
    expect(res.headers['cache-control']).toBe('private, no-store');
    const page = (await get('/api/ledger/entries?start=0', compliance)).json();
    expect(page.end).toBe(Math.min(ledger.size, 100));
  });

  it('are refused to everyone when no role check is configured', async () => {
    const bare = Fastify({ logger: false });
    installErrorHandler(bare);
    await bare.register(ledgerRoutes, { ledger, keyRing });
    const res = await bare.inject({ method: 'GET', url: '/api/ledger/entries?start=0', headers: { authorization: `Bearer ${compliance}` } });
    expect(res.statusCode).toBe(403);
    await bare.close();
  });
});

describe('bad input gives typed 400s', () => {
  const size = () => ledger.size;
  it.each([
    ['/api/ledger/entries?start=-1', 'start must be a non-negative integer'],
    ['/api/ledger/entries?start=abc', 'start must be a non-negative integer'],
    ['/api/ledger/entries?start=1.5', 'start must be a non-negative integer'],
    ['/api/ledger/entries?start=99999999999999999999', 'start is too large'],
    ['/api/ledger/entries?start=9007199254740992', 'start is too large'],
    ['/api/ledger/entries?start=007', 'leading zeros'],
    ['/api/ledger/entries?start=', 'start must be a non-negative integer'],
    ['/api/ledger/entries', 'start'],
    ['/api/ledger/entries?start=0&end=5000', 'beyond the ledger size'],
    ['/api/ledger/entries?start=1000000', 'beyond the ledger size'],
    ['/api/ledger/entries?start=5&end=2', 'before start'],
    ['/api/ledger/entries?start=1&start=2', 'start'],
    ['/api/ledger/entries?start=0&limit=5', 'limit'],
    ['/api/ledger/proof/inclusion?index=-3', 'index must be a non-negative integer'],
    ['/api/ledger/proof/inclusion?index=0x10', 'index must be a non-negative integer'],
    ['/api/ledger/proof/inclusion?index=1e3', 'index must be a non-negative integer'],
    ['/api/ledger/proof/inclusion?index=12345678901234567890', 'index is too large'],
    ['/api/ledger/proof/inclusion?index=5&treeSize=5', 'not below treeSize'],
    ['/api/ledger/proof/inclusion?index=5&treeSize=1000', 'beyond the ledger size'],
    ['/api/ledger/proof/inclusion?index=1000', 'not below treeSize'],
    ['/api/ledger/proof/inclusion?index=0&treeSize=0', 'not below treeSize'],
    ['/api/ledger/proof/inclusion', 'index'],
    ['/api/ledger/proof/consistency?first=20&second=10', 'beyond second'],
    ['/api/ledger/proof/consistency?first=1&second=100000', 'beyond the ledger size'],
    ['/api/ledger/proof/consistency?first=NaN', 'first must be a non-negative integer'],
    ['/api/ledger/proof/consistency?first=-0', 'first must be a non-negative integer'],
    ['/api/ledger/proof/consistency?first=Infinity', 'first must be a non-negative integer'],
    ['/api/ledger/checkpoint?format=xml', 'format'],
  ])('GET %s', async (url, message) => {
    const res = await get(url, compliance);
    expect(res.status, res.text).toBe(400);
    expect(res.json().error.code).toBe('bad_request');
    expect(res.json().error.message).toContain(message);
    expect(size()).toBeGreaterThan(0);
  });

  it(`caps pages at ${MAX_ENTRIES_PER_PAGE} entries`, async () => {
    for (let i = 0; i < MAX_ENTRIES_PER_PAGE + 5; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => ledger.append(entryInput(i + j))));
    }
    const res = await get(`/api/ledger/entries?start=0&end=${MAX_ENTRIES_PER_PAGE + 1}`, compliance);
    expect(res.status).toBe(400);
    expect(res.json().error.message).toContain(`at most ${MAX_ENTRIES_PER_PAGE}`);
    expect((await get(`/api/ledger/entries?start=0&end=${MAX_ENTRIES_PER_PAGE}`, compliance)).json().entries).toHaveLength(MAX_ENTRIES_PER_PAGE);
  });

  it('publishes only verifiable Ed25519 keys', () => {
    expect(keysFromJwks(keyRing.jwks())).toHaveLength(1);
  });
});

/**
 * The evidence bundle of a session made by a real call (with the bank's registered ID photo, the
 * teller's decision and its signed record): exported by the API as a tar any `tar` reads, checked
 * offline by verifyBundle and by `videoteller verify-bundle`. A good bundle verifies; changing any
 * single byte of an entry, of the checkpoint, of the record or of a blob is found, and pinned to
 * what was changed. Keys shipped inside the bundle are told apart from keys the officer brings.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyBundle, type BundleManifest, type BundleReport } from '../../../src/ledger/bundle.ts';
import { fromBase64Url } from '../../../src/ledger/bytes.ts';
import { keysFromJwks, publicJwk } from '../../../src/ledger/keys.ts';
import { nodeEd25519Verify, nodeSha256 } from '../../../src/ledger/node-crypto.ts';
import { noteKey, parseNote, signNote } from '../../../src/ledger/note.ts';
import { readTar, writeTar } from '../../../src/ledger/tar.ts';
import { encodeJpeg, faceSquare, fixtureFaces, loadSample } from '../../fixtures/faces/samples.ts';
import { startTestServer, type TestServer } from '../../helpers/server.ts';
import { SocketClients } from '../../helpers/socket.ts';
import { bearer, decidedCall, get, token } from './helpers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = path.join(root, 'bin/videoteller.mjs');

let server: TestServer;
const clients = new SocketClients(() => server.url);
let tmp: string;
let carol: string;
let sessionId: string;
let bundle: Uint8Array;
let manifest: BundleManifest;
let jwksFile: string;
const photo = (() => {
  const f = fixtureFaces().faces.find((x) => x.id === 's6f2')!;
  return encodeJpeg(faceSquare(loadSample(f.sample), f.box), 92);
})();

const fast = { sha256: nodeSha256, ed25519Verify: nodeEd25519Verify };

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: root, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The bundle with the byte at `offset` within file `name` XOR-ed with `mask`. */
function flipped(name: string, offset: number, mask = 0x01): Uint8Array {
  const file = readTar(bundle).find((f) => f.name === name);
  if (!file) throw new Error(`no ${name} in the bundle`);
  const copy = new Uint8Array(bundle);
  copy[file.offset + offset]! ^= mask;
  return copy;
}

function fileOf(name: string): Uint8Array {
  return readTar(bundle).find((f) => f.name === name)!.data;
}

const failing = (r: BundleReport) => r.entries.filter((e) => !e.ok).map((e) => e.index);

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'vt-bundle-'));
  server = await startTestServer({ IDENTITY_WORKERS: '1' });
  carol = await token(server, 'carol');
  // A call with the registered ID photo; without media the server cannot approve, so the teller rejects.
  sessionId = await decidedCall(clients, server, {
    teller: 'alice',
    businessType: 'corporate_account_opening',
    decision: 'rejected',
    referencePhoto: Buffer.from(photo).toString('base64'),
  });
  const res = await get(server, `/api/compliance/sessions/${sessionId}/bundle`, bearer(carol));
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/x-tar');
  expect(res.headers.get('content-disposition')).toBe(`attachment; filename="videoteller-session-${sessionId}.tar"`);
  bundle = new Uint8Array(await res.arrayBuffer());
  writeFileSync(path.join(tmp, 'bundle.tar'), bundle);
  manifest = JSON.parse(new TextDecoder().decode(fileOf('manifest.json'))) as BundleManifest;
  jwksFile = path.join(tmp, 'bank-jwks.json');
  writeFileSync(jwksFile, await (await fetch(`${server.url}/.well-known/jwks.json`)).text());
}, 180_000);

afterAll(async () => {
  clients.closeAll();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('a good bundle', () => {
  it('is a tar of plain files that the system tar lists, with entries, checkpoint, keys, record and the photo', () => {
    const listed = execFileSync('tar', ['-tf', path.join(tmp, 'bundle.tar')], { encoding: 'utf8' }).trim().split('\n');
    const entries = manifest.entries.map((e) => e.file);
    const blob = manifest.blobs.find((b) => b.kind === 'reference_photo')!;
    expect(blob.file).toBe(`blobs/${blob.sha256}.jpg`);
    expect(listed).toEqual(['manifest.json', 'checkpoint.txt', 'jwks.json', 'record.json', ...entries, blob.file]);
    expect(manifest.entries.length).toBeGreaterThan(5);
    expect(Buffer.from(fileOf(blob.file!)).equals(Buffer.from(photo))).toBe(true);
  });

  it('verifies: every entry in the log under the signed checkpoint, the record, the photo', async () => {
    const r = await verifyBundle(bundle, fast);
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.entries.every((e) => e.ok)).toBe(true);
    expect(r.entries.map((e) => e.type)).toEqual(expect.arrayContaining(['session.created', 'identity.reference_photo', 'call.started', 'decision.made', 'record.issued']));
    expect(r.record).toMatchObject({ ok: true, decision: 'rejected', tellerId: 't-alice' });
    expect(r.blobs).toEqual([expect.objectContaining({ kind: 'reference_photo', ok: true, bytes: photo.length })]);
    expect(r.checkpoint).toMatchObject({ ok: true, keys: 'bundled' });
    // The portable defaults (the browser's path) agree.
    expect((await verifyBundle(bundle)).ok).toBe(true);
  });

  it('videoteller verify-bundle: exit 0, per entry, and tells bundled keys from trusted ones', () => {
    const own = cli('verify-bundle', path.join(tmp, 'bundle.tar'));
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).toMatch(/keys\s+jwks\.json inside the bundle ONLY: this proves the bundle is internally consistent, not who made it/);
    for (const e of manifest.entries) expect(own.stdout).toMatch(new RegExp(`ok   #${e.index} `));
    expect(own.stdout).toMatch(/record\s+ok .*rejected by t-alice/);
    expect(own.stdout).toMatch(/result\s+OK/);
    const trusted = cli('verify-bundle', path.join(tmp, 'bundle.tar'), '--trusted-key', jwksFile);
    expect(trusted.code).toBe(0);
    expect(trusted.stdout).toContain(`trusted keys from ${jwksFile}`);
    expect(trusted.stdout).toMatch(/checkpoint\s+ok .*\(trusted key\)/);
    const json = JSON.parse(cli('verify-bundle', path.join(tmp, 'bundle.tar'), '--jwks', jwksFile, '--json').stdout);
    expect(json).toMatchObject({ command: 'verify-bundle', ok: true, checkpoint: { keys: 'trusted' } });
  });

  it('serves the photo with HTTP ranges (206, 416)', async () => {
    const blob = manifest.blobs[0]!;
    const url = `/api/compliance/sessions/${sessionId}/blobs/${blob.sha256}`;
    const whole = await get(server, url, bearer(carol));
    expect(whole.status).toBe(200);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(whole.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.from(await whole.arrayBuffer()).equals(Buffer.from(photo))).toBe(true);
    const part = await get(server, url, { ...bearer(carol), range: 'bytes=10-19' });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 10-19/${photo.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(Buffer.from(photo.subarray(10, 20)))).toBe(true);
    const tail = await get(server, url, { ...bearer(carol), range: 'bytes=-5' });
    expect(Buffer.from(await tail.arrayBuffer()).equals(Buffer.from(photo.subarray(photo.length - 5)))).toBe(true);
    const beyond = await get(server, url, { ...bearer(carol), range: `bytes=${photo.length}-` });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${photo.length}`);
    expect(await beyond.json()).toMatchObject({ error: { code: 'bad_request', reason: 'range_not_satisfiable' } });
    // Several ranges or another unit: ignored, the whole file (RFC 9110 allows it).
    expect((await get(server, url, { ...bearer(carol), range: 'bytes=0-1,5-6' })).status).toBe(200);
    expect((await get(server, url, { ...bearer(carol), range: 'pages=1-2' })).status).toBe(200);
  });
});

describe('any changed byte is found', () => {
  it('in an entry: every byte of one entry, and one byte of each other, fails exactly that entry', async () => {
    const target = manifest.entries.find((e) => e.file && fileOf(e.file).length > 0)!;
    const size = fileOf(target.file!).length;
    for (let i = 0; i < size; i++) {
      const r = await verifyBundle(flipped(target.file!, i), fast);
      expect(r.ok, `byte ${i}`).toBe(false);
      expect(failing(r), `byte ${i}`).toEqual([target.index]);
      expect(r.entries.find((e) => e.index === target.index)!.problem!.kind).toBe('inclusion');
    }
    for (const e of manifest.entries) {
      const r = await verifyBundle(flipped(e.file!, Math.floor(fileOf(e.file!).length / 2), 0x04), fast);
      expect(failing(r)).toEqual([e.index]);
    }
  });

  it('the record\'s entry changed fails the entry and the record with it', async () => {
    const recordEntry = manifest.entries.find((e) => e.index === (JSON.parse(new TextDecoder().decode(fileOf('record.json'))) as { index: number }).index)!;
    const r = await verifyBundle(flipped(recordEntry.file!, 20), fast);
    expect(failing(r)).toEqual([recordEntry.index]);
    expect(r.record).toMatchObject({ ok: false, problem: { kind: 'record_not_in_log' } });
  });

  it('in the checkpoint: every byte', async () => {
    const size = fileOf('checkpoint.txt').length;
    for (let i = 0; i < size; i++) {
      const r = await verifyBundle(flipped('checkpoint.txt', i), fast);
      expect(r.ok, `byte ${i}`).toBe(false);
      expect(r.checkpoint.ok, `byte ${i}`).toBe(false);
      expect(r.entries.every((e) => !e.ok), `byte ${i}`).toBe(true);
    }
  });

  it('in the record: every byte', async () => {
    const size = fileOf('record.json').length;
    for (let i = 0; i < size; i++) {
      const r = await verifyBundle(flipped('record.json', i), fast);
      expect(r.ok, `byte ${i}`).toBe(false);
      expect(r.record?.ok, `byte ${i}`).toBe(false);
    }
  });

  it('in a blob: the first, a middle and the last byte', async () => {
    const blob = manifest.blobs[0]!;
    const size = fileOf(blob.file!).length;
    for (const i of [0, Math.floor(size / 2), size - 1]) {
      const r = await verifyBundle(flipped(blob.file!, i), fast);
      expect(r.ok).toBe(false);
      expect(r.blobs).toEqual([expect.objectContaining({ ok: false, problem: expect.objectContaining({ kind: 'blob_mismatch' }) })]);
      expect(r.entries.every((e) => e.ok)).toBe(true);
    }
  });

  it('videoteller verify-bundle exits 1 and names the changed entry', () => {
    const target = manifest.entries[3]!;
    const file = path.join(tmp, 'tampered.tar');
    writeFileSync(file, flipped(target.file!, 30));
    const r = cli('verify-bundle', file, '--trusted-key', jwksFile);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`FAIL #${target.index} `));
    expect(r.stdout).toMatch(new RegExp(`result\\s+FAILED: .*first: inclusion at entry ${target.index}`));
    expect(r.stdout.match(/FAIL #/g)).toHaveLength(1);
  });

  it('a checkpoint re-signed by a forger\'s key passes only with the keys inside the bundle, not with the officer\'s', async () => {
    const files = readTar(bundle).map((f) => ({ name: f.name, data: new Uint8Array(f.data) }));
    const forger = generateKeyPairSync('ed25519');
    const pub = fromBase64Url((forger.publicKey.export({ format: 'jwk' }) as { x: string }).x);
    const text = parseNote(new TextDecoder().decode(fileOf('checkpoint.txt'))).text;
    const key = noteKey(manifest.origin, pub);
    const note = await signNote(text, [{ name: key.name, keyId: key.keyId, sign: (m) => new Uint8Array(sign(null, m, forger.privateKey)) }]);
    const bankJwks = JSON.parse(readFileSync(jwksFile, 'utf8')) as { keys: unknown[] };
    for (const f of files) {
      if (f.name === 'checkpoint.txt') f.data = new TextEncoder().encode(note);
      if (f.name === 'jwks.json') f.data = new TextEncoder().encode(JSON.stringify({ keys: [...bankJwks.keys, publicJwk(pub)] }));
    }
    const forged = writeTar(files);
    expect((await verifyBundle(forged, fast)).ok).toBe(true);
    const withTrusted = await verifyBundle(forged, { ...fast, trustedKeys: keysFromJwks(bankJwks) });
    expect(withTrusted.ok).toBe(false);
    expect(withTrusted.checkpoint.problem?.kind).toBe('checkpoint_untrusted');
    const file = path.join(tmp, 'forged.tar');
    writeFileSync(file, forged);
    expect(cli('verify-bundle', file).code).toBe(0);
    const r = cli('verify-bundle', file, '--trusted-key', jwksFile);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/checkpoint\s+FAIL the checkpoint is not signed by any of the trusted keys/);
  });

  it('a bundle that is not a tar, or lacks its manifest, is refused with exit 1; a missing file with exit 2', () => {
    const junk = path.join(tmp, 'junk.tar');
    writeFileSync(junk, 'not a tar');
    expect(cli('verify-bundle', junk).stdout).toMatch(/result\s+FAILED: 1 problem; first: malformed/);
    writeFileSync(junk, writeTar([{ name: 'x.json', data: new Uint8Array([1]) }]));
    expect(cli('verify-bundle', junk).code).toBe(1);
    expect(cli('verify-bundle', path.join(tmp, 'nope.tar')).code).toBe(2);
    expect(cli('verify-bundle').code).toBe(2);
  });
});

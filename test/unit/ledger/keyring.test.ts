import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { formatCheckpoint, openCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { JWKS_FILE, KEY_FILE, KeyRing } from '../../../src/ledger/keyring.ts';
import { keysFromJwks, noteKeysFor } from '../../../src/ledger/keys.ts';
import { parseVerifierKey, signNote } from '../../../src/ledger/note.ts';
import { capturingLogger, silentLogger, tempDir } from './helpers.ts';

let dirs: { remove(): void }[] = [];
afterEach(() => {
  for (const d of dirs) d.remove();
  dirs = [];
});
function keysDir(): string {
  const t = tempDir('vt-keys-');
  dirs.push(t);
  return path.join(t.dir, 'keys');
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('key ring', () => {
  it('generates its key on first start in a 0600 file, says so in the log, and never logs the private key', async () => {
    const dir = keysDir();
    const cap = capturingLogger();
    const ring = await KeyRing.open({ dir, log: cap.log });
    expect(mode(dir)).toBe(0o700);
    expect(mode(path.join(dir, KEY_FILE))).toBe(0o600);
    expect(mode(path.join(dir, JWKS_FILE))).toBe(0o644);
    const gen = cap.lines().find((l) => l.msg === 'generated the ledger signing key on first start (Ed25519)');
    expect(gen).toMatchObject({ level: 30, kid: ring.activeKid, file: path.join(dir, KEY_FILE) });
    const stored = JSON.parse(readFileSync(path.join(dir, KEY_FILE), 'utf8')) as { keys: { privateKey: string }[] };
    const secret = stored.keys[0]!.privateKey;
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(JSON.stringify(cap.lines())).not.toContain(secret);
    expect(readFileSync(path.join(dir, JWKS_FILE), 'utf8')).not.toContain(secret);
    expect(JSON.parse(readFileSync(path.join(dir, JWKS_FILE), 'utf8'))).toEqual(ring.jwks());
  });

  it('loads the same key on the next start, without generating another', async () => {
    const dir = keysDir();
    const first = await KeyRing.open({ dir, log: silentLogger() });
    const cap = capturingLogger();
    const second = await KeyRing.open({ dir, log: cap.log });
    expect(second.activeKid).toBe(first.activeKid);
    expect(cap.lines().some((l) => String(l.msg).startsWith('generated'))).toBe(false);
  });

  it('creates exactly one key when two processes start on a fresh install at once', async () => {
    const dir = keysDir();
    const [a, b] = await Promise.all([KeyRing.open({ dir, log: silentLogger() }), KeyRing.open({ dir, log: silentLogger() })]);
    expect(a.activeKid).toBe(b.activeKid);
    expect((JSON.parse(readFileSync(path.join(dir, KEY_FILE), 'utf8')) as { keys: unknown[] }).keys).toHaveLength(1);
  });

  it('rotates: a new active key, the old one retired without its private half, both published', async () => {
    const dir = keysDir();
    const ring = await KeyRing.open({ dir, log: silentLogger() });
    const origin = 'bank.example/ledger';
    const old = ring.activeKid;
    const oldNote = await signNote(formatCheckpoint({ origin, size: 1, rootHash: new Uint8Array(32), extensions: [] }), [ring.noteSigner(origin)]);
    const oldJwt = (await ring.signJwt({ sub: 'x' }, 'test+jwt')).jws;
    const rotated = await ring.rotate();
    expect(rotated.kid).not.toBe(old);
    expect(ring.activeKid).toBe(rotated.kid);
    const stored = JSON.parse(readFileSync(path.join(dir, KEY_FILE), 'utf8')) as { keys: { kid: string; status: string; privateKey?: string; retiredAt?: string }[] };
    expect(stored.keys.map((k) => [k.kid, k.status, Boolean(k.privateKey)])).toEqual([
      [old, 'retired', false],
      [rotated.kid, 'active', true],
    ]);
    expect(stored.keys[0]!.retiredAt).toMatch(/Z$/);
    expect(mode(path.join(dir, KEY_FILE))).toBe(0o600);
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([old, rotated.kid]);
    // What the old key signed still verifies; new signatures use the new key.
    await expect(openCheckpoint(oldNote, ring.noteKeys(origin), { origin })).resolves.toMatchObject({ size: 1 });
    const jwks = createLocalJWKSet(ring.jwks());
    await expect(jwtVerify(oldJwt, jwks)).resolves.toMatchObject({ protectedHeader: { kid: old } });
    const newJwt = await ring.signJwt({ sub: 'y' }, 'test+jwt');
    expect(newJwt.kid).toBe(rotated.kid);
    await expect(jwtVerify(newJwt.jws, jwks)).resolves.toMatchObject({ protectedHeader: { kid: rotated.kid, alg: 'EdDSA' } });
    // After a restart too.
    const again = await KeyRing.open({ dir, log: silentLogger() });
    expect(again.activeKid).toBe(rotated.kid);
    expect(keysFromJwks(JSON.parse(readFileSync(path.join(dir, JWKS_FILE), 'utf8'))).map((k) => k.kid)).toEqual([old, rotated.kid]);
  });

  it('publishes verifier keys for checkpoints, active first, that parse back to the same keys', async () => {
    const ring = await KeyRing.open({ dir: keysDir(), log: silentLogger() });
    await ring.rotate();
    const vkeys = ring.verifierKeys('bank.example/ledger');
    expect(vkeys.map((v) => v.status)).toEqual(['active', 'retired']);
    const parsed = vkeys.map((v) => parseVerifierKey(v.vkey));
    expect(parsed.map((p) => p.keyId)).toEqual(
      noteKeysFor('bank.example/ledger', [...ring.publicKeys()].reverse()).map((k) => k.keyId),
    );
  });

  it('refuses a key file others can read', async () => {
    const dir = keysDir();
    await KeyRing.open({ dir, log: silentLogger() });
    chmodSync(path.join(dir, KEY_FILE), 0o644);
    await expect(KeyRing.open({ dir, log: silentLogger() })).rejects.toThrow('chmod 600');
  });

  it('refuses a key file whose ids or keys were tampered with', async () => {
    const dir = keysDir();
    await KeyRing.open({ dir, log: silentLogger() });
    const file = path.join(dir, KEY_FILE);
    const original = readFileSync(file, 'utf8');
    const data = JSON.parse(original) as { keys: { kid: string; publicKey: string }[] };
    writeFileSync(file, JSON.stringify({ ...data, keys: [{ ...data.keys[0]!, kid: 'my-own-id' }] }), { mode: 0o600 });
    await expect(KeyRing.open({ dir, log: silentLogger() })).rejects.toThrow('thumbprint');
    const other = await KeyRing.open({ dir: keysDir(), log: silentLogger() });
    const otherPub = other.jwks().keys[0]!;
    writeFileSync(file, JSON.stringify({ ...data, keys: [{ ...data.keys[0]!, kid: otherPub.kid, publicKey: otherPub.x }] }), { mode: 0o600 });
    await expect(KeyRing.open({ dir, log: silentLogger() })).rejects.toThrow('does not match');
    writeFileSync(file, '{not json', { mode: 0o600 });
    await expect(KeyRing.open({ dir, log: silentLogger() })).rejects.toThrow('not JSON');
  });
});

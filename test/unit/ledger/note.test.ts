import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fromBase64, toBase64, utf8 } from '../../../src/ledger/bytes.ts';
import { formatCheckpoint, openCheckpoint, parseCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { webCryptoEd25519Verify } from '../../../src/ledger/ed25519.ts';
import { ed25519Thumbprint, keysFromJwks, publicJwk } from '../../../src/ledger/keys.ts';
import { nodeEd25519Verify } from '../../../src/ledger/node-crypto.ts';
import { formatVerifierKey, noteKey, NoteError, openNote, parseVerifierKey, signNote, type NoteSigner } from '../../../src/ledger/note.ts';

// The example keys and notes of golang.org/x/mod sumdb/note/note_test.go (github.com/golang/mod):
// TestNewVerifier, TestSign, TestOpen. Ed25519 is deterministic, so signing must match byte for byte.
const VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

/** The Go signer key: PRIVATE+KEY+name+id+base64(0x01 || 32-byte seed). */
function goSigner(skey: string): NoteSigner {
  const [, , name, , ...rest] = skey.split('+'); // the base64 may itself hold '+'
  const seed = fromBase64(rest.join('+')).subarray(1);
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  const pub = (key.export({ format: 'jwk' }) as { x: string }).x;
  const nk = noteKey(name!, new Uint8Array(Buffer.from(pub, 'base64url')));
  return { name: nk.name, keyId: nk.keyId, sign: (m) => new Uint8Array(sign(null, m, key)) };
}

describe('signed notes (golang.org/x/mod/sumdb/note vectors)', () => {
  it('parses the verifier key, recomputes its key ID and formats it back', () => {
    const k = parseVerifierKey(VKEY);
    expect(k.name).toBe('PeterNeumann');
    expect(k.keyId).toBe(0xc74f20a3);
    expect(formatVerifierKey(k)).toBe(VKEY);
    expect(formatVerifierKey(noteKey('PeterNeumann', k.publicKey))).toBe(VKEY);
  });

  it('refuses every truncation and every one-character change of the verifier key', () => {
    const b = Buffer.from(VKEY);
    for (let i = 0; i <= b.length; i++) {
      for (let j = i + 1; j <= b.length; j++) {
        if (i === 0 && j === b.length) continue;
        expect(() => parseVerifierKey(b.subarray(i, j).toString()), b.subarray(i, j).toString()).toThrow(NoteError);
      }
    }
    for (let i = 0; i < b.length; i++) {
      const c = Buffer.from(b);
      c[i]!++;
      expect(() => parseVerifierKey(c.toString())).toThrow(NoteError);
    }
    expect(() => parseVerifierKey('PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==')).toThrow(NoteError);
    expect(() => parseVerifierKey('PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')).toThrow(NoteError);
  });

  it('signs TestSign\'s note byte for byte', async () => {
    const signer = goSigner(SKEY);
    expect(signer.keyId).toBe(0xc74f20a3);
    expect(await signNote(TEXT, [signer])).toBe(`${TEXT}\n${PETER_SIG}`);
    await expect(signNote('abc', [signer])).rejects.toThrow(NoteError);
  });

  it.each([
    ['WebCrypto', webCryptoEd25519Verify],
    ['node:crypto', nodeEd25519Verify],
  ])('opens TestOpen\'s notes as the Go code does (%s)', async (_name, verify) => {
    const peter = parseVerifierKey(VKEY);
    const enoch = parseVerifierKey(ENOCH_VKEY);
    const one = await openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [peter], verify);
    expect(one.text).toBe(TEXT);
    expect(one.verified.map((s) => s.name)).toEqual(['PeterNeumann']);
    expect(one.unverified.map((s) => [s.name, s.keyId])).toEqual([['EnochRoot', 0xaf0cfe78]]);
    const both = await openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [peter, enoch], verify);
    expect(both.verified.map((s) => s.name)).toEqual(['PeterNeumann', 'EnochRoot']);
    await expect(openNote(`${TEXT}\n${PETER_SIG}${ENOCH_SIG}`, [], verify)).rejects.toMatchObject({ kind: 'unverified' });
    await expect(openNote(`${TEXT}\n${PETER_SIG.repeat(101)}`, [peter], verify)).rejects.toMatchObject({ kind: 'malformed' });
    const bad = `${TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`;
    await expect(openNote(bad, [peter], verify)).rejects.toMatchObject({ kind: 'invalid_signature' });
    await expect(openNote(`${TEXT.replace('cryptography', 'cryptographY')}\n${PETER_SIG}`, [peter], verify)).rejects.toMatchObject({ kind: 'invalid_signature' });
    for (const msg of [
      TEXT,
      `${TEXT}\n`,
      `${TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\x01${TEXT}\n${PETER_SIG}`,
      `${TEXT}\n\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${TEXT}\n${PETER_SIG}Unexpected line.\n`,
    ]) {
      await expect(openNote(msg, [peter], verify), JSON.stringify(msg)).rejects.toMatchObject({ kind: 'malformed' });
    }
    await expect(openNote(new Uint8Array([0xff, ...utf8(`${TEXT}\n${PETER_SIG}`)]), [peter], verify)).rejects.toMatchObject({ kind: 'malformed' });
  });
});

describe('checkpoints (c2sp.org/tlog-checkpoint)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = new Uint8Array(Buffer.from((publicKey.export({ format: 'jwk' }) as { x: string }).x, 'base64url'));
  const origin = 'bank.example/ledger';
  const key = noteKey(origin, pub);
  const signer: NoteSigner = { name: origin, keyId: key.keyId, sign: (m) => new Uint8Array(sign(null, m, privateKey)) };
  const root = new Uint8Array(32).fill(7);

  it('formats the three lines of the spec and parses them back', () => {
    const text = formatCheckpoint({ origin, size: 20852163, rootHash: root, extensions: [] });
    expect(text).toBe(`${origin}\n20852163\n${toBase64(root)}\n`);
    expect(parseCheckpoint(text)).toEqual({ origin, size: 20852163, rootHash: root, extensions: [] });
    expect(parseCheckpoint(`${text}ext line\n`).extensions).toEqual(['ext line']);
  });

  it.each([
    ['a leading zero', `${origin}\n012\n${toBase64(root)}\n`],
    ['a negative size', `${origin}\n-1\n${toBase64(root)}\n`],
    ['a short root', `${origin}\n1\n${toBase64(root.subarray(1))}\n`],
    ['missing lines', `${origin}\n1\n`],
    ['an empty extension line', `${origin}\n1\n${toBase64(root)}\n\n`],
    ['no final newline', `${origin}\n1\n${toBase64(root)}`],
    ['a huge size', `${origin}\n99999999999999999\n${toBase64(root)}\n`],
  ])('refuses %s', (_what, text) => expect(() => parseCheckpoint(text)).toThrow());

  it('opens a signed checkpoint with the origin key, and refuses another key, another origin or an edit', async () => {
    const note = await signNote(formatCheckpoint({ origin, size: 5, rootHash: root, extensions: [] }), [signer]);
    const cp = await openCheckpoint(note, [key], { origin });
    expect(cp.size).toBe(5);
    await expect(openCheckpoint(note, [key], { origin: 'other/log' })).rejects.toThrow('origin');
    const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }) as { x: string };
    await expect(openCheckpoint(note, [noteKey(origin, new Uint8Array(Buffer.from(other.x, 'base64url')))])).rejects.toMatchObject({ kind: 'unverified' });
    await expect(openCheckpoint(note.replace('\n5\n', '\n6\n'), [key])).rejects.toMatchObject({ kind: 'invalid_signature' });
    // A key of another name (not the origin) signing a checkpoint does not count.
    const named = noteKey('someone', pub);
    const byOther = await signNote(formatCheckpoint({ origin, size: 5, rootHash: root, extensions: [] }), [{ ...signer, name: 'someone', keyId: named.keyId }]);
    await expect(openCheckpoint(byOther, [named, key])).rejects.toMatchObject({ kind: 'unverified' });
  });
});

describe('JWKS keys', () => {
  it('derives RFC 7638 thumbprints as key ids (RFC 8037 appendix A.3 example)', () => {
    // RFC 8037 A.3: the thumbprint of the example Ed25519 key.
    const x = Buffer.from('11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', 'base64url');
    expect(ed25519Thumbprint(new Uint8Array(x))).toBe('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
    const jwk = publicJwk(new Uint8Array(x));
    expect(jwk).toEqual({ kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k', alg: 'EdDSA', use: 'sig' });
    expect(keysFromJwks({ keys: [jwk, { kty: 'RSA', n: 'x', e: 'AQAB' }] })).toEqual([{ kid: jwk.kid, publicKey: new Uint8Array(x) }]);
    expect(() => keysFromJwks({ keys: [{ ...jwk, kid: 'chosen-by-attacker' }] })).toThrow('thumbprint');
    expect(() => keysFromJwks({ keys: [{ ...jwk, x: 'AAAA' }] })).toThrow('32 bytes');
    expect(() => keysFromJwks([jwk])).toThrow('keys');
  });
});

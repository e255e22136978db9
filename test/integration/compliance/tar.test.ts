/**
 * The bundle's tar against the system's GNU tar, both ways: what our writer makes, `tar` lists and
 * extracts byte for byte; what `tar --format=ustar` makes, our reader reads. The reader refuses
 * what a bundle must never hold (links, absolute or `..` paths, duplicates, a bad checksum).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readTar, tarHeader, TarError, writeTar } from '../../../src/ledger/tar.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vt-tar-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const files = [
  { name: 'manifest.json', data: new TextEncoder().encode('{"a":1}\n') },
  { name: 'empty.txt', data: new Uint8Array(0) },
  { name: 'entries/0000000000000042.json', data: new TextEncoder().encode('{"index":42}') },
  { name: 'blobs/exact-block.bin', data: randomBytes(512) },
  { name: 'blobs/big.bin', data: randomBytes(3 * 512 + 17) },
];

describe('ustar', () => {
  it('GNU tar lists and extracts what we write, byte for byte', () => {
    const archive = path.join(dir, 'ours.tar');
    writeFileSync(archive, writeTar(files));
    expect(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n')).toEqual(files.map((f) => f.name));
    const out = path.join(dir, 'out');
    mkdirSync(out);
    execFileSync('tar', ['-xf', archive, '-C', out]);
    for (const f of files) expect(Buffer.from(readFileSync(path.join(out, f.name))).equals(Buffer.from(f.data)), f.name).toBe(true);
  });

  it('we read what GNU tar writes in ustar format', () => {
    const src = path.join(dir, 'src');
    for (const f of files) {
      mkdirSync(path.dirname(path.join(src, f.name)), { recursive: true });
      writeFileSync(path.join(src, f.name), f.data);
    }
    const archive = path.join(dir, 'gnu.tar');
    execFileSync('tar', ['--format=ustar', '-cf', archive, '-C', src, ...files.map((f) => f.name)]);
    const read = readTar(new Uint8Array(readFileSync(archive)));
    expect(read.map((f) => f.name)).toEqual(files.map((f) => f.name));
    for (const f of files) expect(Buffer.from(read.find((r) => r.name === f.name)!.data).equals(Buffer.from(f.data))).toBe(true);
  });

  it('refuses links, directories, unsafe names, duplicates, bad checksums and a missing end', () => {
    const src = path.join(dir, 'link-src');
    mkdirSync(src);
    writeFileSync(path.join(src, 'target'), 'x');
    symlinkSync('target', path.join(src, 'link'));
    const withLink = path.join(dir, 'link.tar');
    execFileSync('tar', ['--format=ustar', '-cf', withLink, '-C', src, 'target', 'link']);
    expect(() => readTar(new Uint8Array(readFileSync(withLink)))).toThrow(/not a regular file/);
    const withDir = path.join(dir, 'dir.tar');
    execFileSync('tar', ['--format=ustar', '-cf', withDir, '-C', dir, 'src']);
    expect(() => readTar(new Uint8Array(readFileSync(withDir)))).toThrow(/not a regular file/);

    expect(() => tarHeader('../etc/passwd', 1, 0)).toThrow(TarError);
    expect(() => tarHeader('/abs', 1, 0)).toThrow(TarError);
    const evil = writeTar([{ name: 'ok', data: new Uint8Array(1) }]);
    evil.set(new TextEncoder().encode('../x\0'), 0); // rename, then fix the checksum
    evil.fill(0x20, 148, 156);
    const sum = evil.subarray(0, 512).reduce((a, b) => a + b, 0);
    evil.set(new TextEncoder().encode(sum.toString(8).padStart(6, '0') + '\0 '), 148);
    expect(() => readTar(evil)).toThrow(/unsafe file name/);

    expect(() => readTar(writeTar([{ name: 'a', data: new Uint8Array(1) }, { name: 'a', data: new Uint8Array(2) }]))).toThrow(/twice/);
    const bad = writeTar(files.slice(0, 1));
    bad[10]! ^= 1;
    expect(() => readTar(bad)).toThrow(/checksum/);
    const good = writeTar(files.slice(0, 1));
    expect(() => readTar(good.subarray(0, good.length - 1024))).toThrow(/end-of-archive/);
    expect(() => readTar(good.subarray(0, good.length - 512))).toThrow(/single zero block/);
  });
});

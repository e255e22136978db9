/**
 * The conformance suite every Ledger backend must pass (the file backend now; PostgreSQL next).
 * Call describeLedgerConformance with a factory that opens a fresh, empty ledger.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { toBase64 } from '../../../src/ledger/bytes.ts';
import { openCheckpoint } from '../../../src/ledger/checkpoint.ts';
import { decodeEntry, EntryInputError, MAX_ENTRY_BYTES } from '../../../src/ledger/entry.ts';
import { noteKeysFor, type LedgerPublicKey } from '../../../src/ledger/keys.ts';
import { hashLeaf, MerkleTree, verifyConsistency, verifyInclusion } from '../../../src/ledger/merkle.ts';
import { nodeSha256 } from '../../../src/ledger/node-crypto.ts';
import { LedgerError, type Ledger } from '../../../src/ledger/types.ts';
import { entryInput } from './helpers.ts';

export interface LedgerUnderTest {
  ledger: Ledger;
  keys: LedgerPublicKey[];
  /** Closes and opens the same ledger again. */
  reopen(): Promise<Ledger>;
  cleanup(): Promise<void>;
}

export function describeLedgerConformance(name: string, open: (opts: { checkpointIntervalMs: number }) => Promise<LedgerUnderTest>): void {
  describe(`Ledger conformance: ${name}`, () => {
    let current: LedgerUnderTest | undefined;
    const start = async (checkpointIntervalMs = 60_000) => (current = await open({ checkpointIntervalMs }));
    afterEach(async () => {
      await current?.cleanup();
      current = undefined;
    });

    it('appends entries with consecutive indexes, canonical bytes and RFC 6962 leaf hashes', async () => {
      const { ledger } = await start();
      expect(ledger.size).toBe(0);
      const before = Date.now();
      const r0 = await ledger.append(entryInput(0));
      const r1 = await ledger.append({ sessionId: 's-1', type: 'session.created', actor: 'system', payload: { z: 1, a: [true, null, 'x'], m: { b: 2, a: 1 } } });
      expect([r0.index, r1.index]).toEqual([0, 1]);
      expect(ledger.size).toBe(2);
      expect(r1.entry).toEqual({ index: 1, time: r1.entry.time, sessionId: 's-1', type: 'session.created', actor: 'system', payload: { z: 1, a: [true, null, 'x'], m: { b: 2, a: 1 } } });
      expect(Date.parse(r1.entry.time)).toBeGreaterThanOrEqual(before - 1);
      const stored = await ledger.getEntries(0, 2);
      expect(new TextDecoder().decode(stored[1]!.bytes)).toBe(
        `{"actor":"system","index":1,"payload":{"a":[true,null,"x"],"m":{"a":1,"b":2},"z":1},"sessionId":"s-1","time":"${r1.entry.time}","type":"session.created"}`,
      );
      for (const [i, s] of stored.entries()) {
        expect(decodeEntry(s.bytes).index).toBe(i);
        expect(toBase64(s.leafHash)).toBe(toBase64(hashLeaf(s.bytes, nodeSha256)));
      }
      expect(toBase64(r0.leafHash)).toBe(toBase64(stored[0]!.leafHash));
    });

    it('shares writes between concurrent appends and loses none of them', async () => {
      const { ledger } = await start();
      const results = await Promise.all(Array.from({ length: 300 }, (_, i) => ledger.append(entryInput(i))));
      expect(results.map((r) => r.index).sort((a, b) => a - b)).toEqual(Array.from({ length: 300 }, (_, i) => i));
      // Each result's entry is the one stored at its index.
      const stored = await ledger.getEntries(0, 300);
      for (const r of results) expect(stored[r.index]!.entry).toEqual(r.entry);
      expect(ledger.size).toBe(300);
    });

    it('serves the root, inclusion proofs and consistency proofs of the stored entries', async () => {
      const { ledger } = await start();
      for (let i = 0; i < 37; i++) await ledger.append(entryInput(i));
      const stored = await ledger.getEntries(0, 37);
      const ref = new MerkleTree(nodeSha256);
      for (const s of stored) ref.append(hashLeaf(s.bytes, nodeSha256));
      for (const size of [1, 2, 5, 16, 17, 36, 37]) {
        const root = await ledger.rootHash(size);
        expect(toBase64(root)).toBe(toBase64(ref.root(size)));
        for (let i = 0; i < size; i++) {
          expect(verifyInclusion(i, size, stored[i]!.leafHash, await ledger.inclusionProof(i, size), root, nodeSha256), `${i}/${size}`).toBe(true);
        }
        for (const first of [0, 1, 3, 8, size]) {
          if (first > size) continue;
          const proof = await ledger.consistencyProof(first, size);
          expect(verifyConsistency(first, size, proof, await ledger.rootHash(first), root, nodeSha256), `${first}->${size}`).toBe(true);
        }
      }
    });

    it('refuses ranges and proofs outside the tree with out_of_range', async () => {
      const { ledger } = await start();
      for (let i = 0; i < 4; i++) await ledger.append(entryInput(i));
      for (const call of [
        () => ledger.getEntries(0, 5),
        () => ledger.getEntries(-1, 2),
        () => ledger.getEntries(3, 2),
        () => ledger.getEntries(0.5, 2),
        () => ledger.rootHash(5),
        () => ledger.inclusionProof(4, 4),
        () => ledger.inclusionProof(0, 5),
        () => ledger.inclusionProof(-1, 4),
        () => ledger.consistencyProof(3, 2),
        () => ledger.consistencyProof(2, 5),
      ]) {
        await expect(call()).rejects.toMatchObject({ name: 'LedgerError', code: 'out_of_range' });
      }
      expect(await ledger.getEntries(2, 2)).toEqual([]);
    });

    it('lists the entries of one session in order', async () => {
      const { ledger } = await start();
      for (let i = 0; i < 12; i++) await ledger.append(entryInput(i));
      const mine = await ledger.entriesOf('session-1');
      expect(mine.map((e) => e.index)).toEqual([1, 4, 7, 10]);
      expect(mine.every((e) => e.sessionId === 'session-1')).toBe(true);
      expect(await ledger.entriesOf('nobody')).toEqual([]);
    });

    it('signs checkpoints that verify with the public keys and match the tree', async () => {
      const { ledger, keys } = await start();
      for (let i = 0; i < 5; i++) await ledger.append(entryInput(i));
      const cp = await ledger.checkpoint();
      expect(cp.size).toBe(5);
      const opened = await openCheckpoint(cp.note, noteKeysFor(ledger.origin, keys), { origin: ledger.origin });
      expect(opened.size).toBe(5);
      expect(toBase64(opened.rootHash)).toBe(toBase64(await ledger.rootHash(5)));
      expect(ledger.latestCheckpoint()?.size).toBe(5);
      // On demand again with nothing new: the same checkpoint.
      expect((await ledger.checkpoint()).note).toBe(cp.note);
    });

    it('signs a checkpoint by itself within the interval while entries arrive', async () => {
      const { ledger } = await start(50);
      await ledger.append(entryInput(0));
      await ledger.append(entryInput(1));
      const deadline = Date.now() + 5000;
      while ((ledger.latestCheckpoint()?.size ?? 0) < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(ledger.latestCheckpoint()?.size).toBe(2);
    });

    it.each([
      ['a bad type', { ...entryInput(0), type: 'Bad Type' }, 'type'],
      ['an empty session id', { ...entryInput(0), sessionId: '' }, 'sessionId'],
      ['a control character in the actor', { ...entryInput(0), actor: 'a\nb' }, 'actor'],
      ['a payload array', { ...entryInput(0), payload: [] as unknown as Record<string, unknown> }, 'payload'],
      ['an image in the payload', { ...entryInput(0), payload: { photo: 'A'.repeat(5000) } }, 'payload.photo'],
      ['a data URL', { ...entryInput(0), payload: { img: 'data:image/png;base64,AAAA' } }, 'payload.img'],
      ['a Date', { ...entryInput(0), payload: { when: new Date() } }, 'payload.when'],
      ['NaN', { ...entryInput(0), payload: { score: Number.NaN } }, 'payload.score'],
      ['undefined in an array', { ...entryInput(0), payload: { list: [1, undefined] } }, 'payload.list[1]'],
      ['deep nesting', { ...entryInput(0), payload: { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } } }, 'payload'],
      ['an entry too large', { ...entryInput(0), payload: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'x'.repeat(1000)])) }, `${MAX_ENTRY_BYTES}`],
    ])('refuses %s with EntryInputError and records nothing', async (_what, input, mention) => {
      const { ledger } = await start();
      await expect(ledger.append(input)).rejects.toThrow(EntryInputError);
      await expect(ledger.append(input)).rejects.toThrow(mention);
      expect(ledger.size).toBe(0);
      expect((await ledger.append(entryInput(1))).index).toBe(0);
    });

    it('keeps everything across a restart and continues the indexes', async () => {
      const t = await start();
      for (let i = 0; i < 20; i++) await t.ledger.append(entryInput(i));
      const root = toBase64(await t.ledger.rootHash());
      const entries = await t.ledger.getEntries(0, 20);
      const again = await t.reopen();
      expect(again.size).toBe(20);
      expect(toBase64(await again.rootHash())).toBe(root);
      expect(await again.getEntries(0, 20)).toEqual(entries);
      expect(again.latestCheckpoint()?.size).toBe(20);
      expect((await again.append(entryInput(20))).index).toBe(20);
      expect((await again.entriesOf('session-2')).map((e) => e.index)).toEqual([2, 5, 8, 11, 14, 17, 20]);
    });

    it('refuses appends once closed, after finishing the ones already accepted', async () => {
      const { ledger } = await start();
      const pending = Array.from({ length: 10 }, (_, i) => ledger.append(entryInput(i)));
      const closing = ledger.close();
      await expect(ledger.append(entryInput(99))).rejects.toMatchObject({ code: 'closed' });
      expect((await Promise.all(pending)).map((r) => r.index)).toEqual(Array.from({ length: 10 }, (_, i) => i));
      await closing;
      expect(ledger.latestCheckpoint()?.size).toBe(10);
      expect(LedgerError).toBeDefined();
    });
  });
}

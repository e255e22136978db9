import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fromBase64, fromHex, toBase64, toHex, utf8 } from '../../../src/ledger/bytes.ts';
import {
  checkConsistency,
  CompactRange,
  emptyRoot,
  hashChildren,
  hashLeaf,
  MerkleTree,
  ProofError,
  rootFromInclusionProof,
  splitPoint,
  verifyConsistency,
  verifyInclusion,
} from '../../../src/ledger/merkle.ts';
import { nodeSha256 } from '../../../src/ledger/node-crypto.ts';
import { sha256 } from '../../../src/ledger/sha256.ts';
import {
  CCTV_CONSISTENCY_INVALID,
  CCTV_CONSISTENCY_VALID,
  CCTV_INCLUSION_INVALID,
  CCTV_INCLUSION_VALID,
  CCTV_TREE,
  TD_CONSISTENCY_PROOFS,
  TD_HASHER,
  TD_INCLUSION_PROOFS,
  TD_LEAF_INPUTS_HEX,
  TD_NODE_HASHES_HEX,
  TD_REF_INCLUSION_PROOFS,
  TD_ROOTS_HEX,
} from './fixtures/rfc6962-vectors.ts';

// ---- A reference implementation written straight from RFC 6962 §2.1, deliberately naive -------
// (recursion over arrays of entries, node:crypto): the tree under test must agree with it, and it
// must agree with the published vectors.

const H = (...parts: Uint8Array[]) => new Uint8Array(createHash('sha256').update(Buffer.concat(parts)).digest());
const refLeaf = (d: Uint8Array) => H(new Uint8Array([0]), d);
function refK(n: number): number {
  let k = 1;
  while (k << 1 < n) k <<= 1;
  return k;
}
function refMTH(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return H();
  if (d.length === 1) return refLeaf(d[0]!);
  const k = refK(d.length);
  return H(new Uint8Array([1]), refMTH(d.slice(0, k)), refMTH(d.slice(k)));
}
function refPATH(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  const k = refK(d.length);
  return m < k ? [...refPATH(m, d.slice(0, k)), refMTH(d.slice(k))] : [...refPATH(m - k, d.slice(k)), refMTH(d.slice(0, k))];
}
function refSUBPROOF(m: number, d: Uint8Array[], b: boolean): Uint8Array[] {
  const n = d.length;
  if (m === n) return b ? [] : [refMTH(d)];
  const k = refK(n);
  return m <= k
    ? [...refSUBPROOF(m, d.slice(0, k), b), refMTH(d.slice(k))]
    : [...refSUBPROOF(m - k, d.slice(k), false), refMTH(d.slice(0, k))];
}
const refPROOF = (m: number, d: Uint8Array[]) => (m === 0 ? [] : refSUBPROOF(m, d, true));

const hex = (bs: Uint8Array[]) => bs.map(toHex);
const tdLeaves = TD_LEAF_INPUTS_HEX.map(fromHex);
const cctvLeaves = CCTV_TREE.map((v) => utf8(v.leaf_data));

function treeOf(data: Uint8Array[], hash = nodeSha256): MerkleTree {
  const t = new MerkleTree(hash);
  for (const d of data) t.append(hashLeaf(d, hash));
  return t;
}

describe('SHA-256 (portable)', () => {
  it('matches the FIPS 180-2 examples', () => {
    expect(toHex(sha256(utf8('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(toHex(sha256(utf8('')))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(toHex(sha256(utf8('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
    expect(toHex(sha256(new Uint8Array(1_000_000).fill(0x61)))).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('agrees with node:crypto on every length around the block and padding boundaries', () => {
    for (let len = 0; len <= 260; len++) {
      const data = randomBytes(len);
      expect(toHex(sha256(data)), `length ${len}`).toBe(toHex(nodeSha256(data)));
    }
  });
});

describe('RFC 6962 hashing', () => {
  it.each([
    ['portable', sha256],
    ['node', nodeSha256],
  ])('matches rfc6962_test.go (%s SHA-256)', (_name, hash) => {
    expect(toHex(emptyRoot(hash))).toBe(TD_HASHER.emptyRoot);
    expect(toHex(hashLeaf(new Uint8Array(0), hash))).toBe(TD_HASHER.emptyLeaf);
    expect(toHex(hashLeaf(utf8('L123456'), hash))).toBe(TD_HASHER.leafL123456);
    expect(toHex(hashChildren(utf8('N123'), utf8('N456'), hash))).toBe(TD_HASHER.nodeN123N456);
  });

  it('the reference implementation reproduces every published node hash and root', () => {
    TD_NODE_HASHES_HEX.forEach((level, l) =>
      level.forEach((h, i) => expect(toHex(refMTH(tdLeaves.slice(i * 2 ** l, (i + 1) * 2 ** l)))).toBe(h)),
    );
    TD_ROOTS_HEX.forEach((root, size) => expect(toHex(refMTH(tdLeaves.slice(0, size)))).toBe(root));
    CCTV_TREE.forEach((v, i) => expect(toBase64(refMTH(cctvLeaves.slice(0, i + 1)))).toBe(v.root_hash));
  });

  it('splits at the largest power of two below n', () => {
    expect([2, 3, 4, 5, 7, 8, 9, 63, 28937].map(splitPoint)).toEqual([1, 2, 2, 4, 4, 4, 8, 32, 16384]);
    expect(splitPoint(2 ** 53 - 1)).toBe(2 ** 52);
  });
});

describe('roots', () => {
  it('sizes 0-8 match testonly/constants.go, for every earlier size too, with either SHA-256', () => {
    for (const hash of [sha256, nodeSha256]) {
      const tree = new MerkleTree(hash);
      const compact = new CompactRange(hash);
      expect(toHex(tree.root())).toBe(TD_ROOTS_HEX[0]);
      expect(toHex(compact.root())).toBe(TD_ROOTS_HEX[0]);
      tdLeaves.forEach((d, i) => {
        tree.append(hashLeaf(d, hash));
        compact.append(hashLeaf(d, hash));
        expect(toHex(tree.root()), `size ${i + 1}`).toBe(TD_ROOTS_HEX[i + 1]);
        expect(toHex(compact.root()), `compact size ${i + 1}`).toBe(TD_ROOTS_HEX[i + 1]);
        for (let s = 0; s <= i + 1; s++) expect(toHex(tree.root(s))).toBe(TD_ROOTS_HEX[s]);
      });
    }
  });

  it('sizes 1-16 match the CCTV merkle_tree.json vectors (leaf and root hashes)', () => {
    const tree = new MerkleTree(nodeSha256);
    const compact = new CompactRange(nodeSha256);
    CCTV_TREE.forEach((v, i) => {
      const leaf = hashLeaf(utf8(v.leaf_data), nodeSha256);
      expect(toBase64(leaf)).toBe(v.leaf_hash);
      tree.append(leaf);
      compact.append(leaf);
      expect(toBase64(tree.root()), `size ${i + 1}`).toBe(v.root_hash);
      expect(toBase64(compact.root())).toBe(v.root_hash);
    });
    CCTV_TREE.forEach((v, i) => expect(toBase64(tree.root(i + 1))).toBe(v.root_hash));
  });

  it('agrees with the RFC definition for every size up to 300, across the stored and recomputed levels', () => {
    const data = Array.from({ length: 300 }, (_, i) => utf8(String(i)));
    const tree = treeOf(data);
    const compact = new CompactRange(nodeSha256);
    for (let size = 0; size <= 300; size++) {
      if (size > 0) compact.append(hashLeaf(data[size - 1]!, nodeSha256));
      const want = toHex(refMTH(data.slice(0, size)));
      expect(toHex(tree.root(size)), `size ${size}`).toBe(want);
      expect(toHex(compact.root()), `compact size ${size}`).toBe(want);
    }
  });

  it('refuses sizes beyond the tree, negative or fractional', () => {
    const tree = treeOf(tdLeaves);
    for (const bad of [9, -1, 1.5, Number.NaN]) expect(() => tree.root(bad)).toThrow(RangeError);
    expect(() => tree.append(new Uint8Array(31))).toThrow(TypeError);
  });
});

/** transparency-dev/merkle proof/verify_test.go corruptInclusionProof(): every probe must fail. */
function inclusionProbes(index: number, size: number, proof: Uint8Array[], root: Uint8Array, leaf: Uint8Array) {
  const some = fromHex('abacaba000000000000000000000000000000000000000000060061e00123456');
  const probes: [string, number, number, Uint8Array, Uint8Array, Uint8Array[]][] = [
    ['index - 1', index - 1, size, root, leaf, proof],
    ['index + 1', index + 1, size, root, leaf, proof],
    ['index ^ 2', index ^ 2, size, root, leaf, proof],
    ['size * 2', index, size * 2, root, leaf, proof],
    ['size / 2', index, Math.floor(size / 2), root, leaf, proof],
    ['wrong leaf', index, size, root, sha256(utf8('WrongLeaf')), proof],
    ['empty root', index, size, emptyRoot(), leaf, proof],
    ['random root', index, size, some, leaf, proof],
    ['trailing garbage', index, size, root, leaf, [...proof, new Uint8Array(0)]],
    ['trailing root', index, size, root, leaf, [...proof, root]],
    ['preceding garbage', index, size, root, leaf, [new Uint8Array(0), ...proof]],
    ['preceding root', index, size, root, leaf, [root, ...proof]],
  ];
  proof.forEach((_, i) => {
    const wrong = proof.map((p) => p.slice());
    wrong[i]![0]! ^= 8;
    probes.push([`modified proof[${i}] bit 3`, index, size, root, leaf, wrong]);
  });
  if (proof.length > 0) probes.push(['removed component', index, size, root, leaf, proof.slice(0, -1)]);
  if (proof.length > 1) probes.push(['inserted component', index, size, root, leaf, [proof[0]!, some, ...proof.slice(1)]]);
  return probes;
}

/** transparency-dev/merkle proof/verify_test.go corruptConsistencyProof(). */
function consistencyProbes(size1: number, size2: number, root1: Uint8Array, root2: Uint8Array, proof: Uint8Array[]) {
  const wrongRoot = sha256(utf8('WrongRoot'));
  const probes: [string, number, number, Uint8Array, Uint8Array, Uint8Array[]][] = [
    ['size1 - 1', size1 - 1, size2, root1, root2, proof],
    ['size1 + 1', size1 + 1, size2, root1, root2, proof],
    ['size1 ^ 2', size1 ^ 2, size2, root1, root2, proof],
    ['size2 * 2', size1, size2 * 2, root1, root2, proof],
    ['size2 / 2', size1, Math.floor(size2 / 2), root1, root2, proof],
    ['wrong root1', size1, size2, wrongRoot, root2, proof],
    ['wrong root2', size1, size2, root1, wrongRoot, proof],
    ['swapped roots', size1, size2, root2, root1, proof],
    ['empty proof', size1, size2, root1, root2, []],
    ['trailing garbage', size1, size2, root1, root2, [...proof, new Uint8Array(0)]],
    ['trailing root1', size1, size2, root1, root2, [...proof, root1]],
    ['trailing root2', size1, size2, root1, root2, [...proof, root2]],
    ['preceding garbage', size1, size2, root1, root2, [new Uint8Array(0), ...proof]],
    ['preceding root1', size1, size2, root1, root2, [root1, ...proof]],
    ['preceding root2', size1, size2, root1, root2, [root2, ...proof]],
    ['preceding proof[0]', size1, size2, root1, root2, [proof[0]!, ...proof]],
    ['truncated proof', size1, size2, root1, root2, proof.slice(0, -1)],
  ];
  proof.forEach((_, i) => {
    const wrong = proof.map((p) => p.slice());
    wrong[i]![0]! ^= 16;
    probes.push([`modified proof[${i}] bit 4`, size1, size2, root1, root2, wrong]);
  });
  return probes;
}

describe('inclusion proofs', () => {
  const tree = treeOf(tdLeaves);

  it('match and verify the verify_test.go vectors, and every corruption of them fails', () => {
    for (const v of TD_INCLUSION_PROOFS) {
      const index = v.leaf - 1;
      const proof = v.proof.map(fromHex);
      const root = fromHex(TD_ROOTS_HEX[v.size]!);
      const leaf = hashLeaf(tdLeaves[index]!);
      expect(hex(tree.inclusionProof(index, v.size))).toEqual(v.proof);
      expect(toHex(rootFromInclusionProof(index, v.size, leaf, proof))).toBe(TD_ROOTS_HEX[v.size]);
      expect(verifyInclusion(index, v.size, leaf, proof, root)).toBe(true);
      for (const [desc, i, s, r, l, p] of inclusionProbes(index, v.size, proof, root, leaf)) {
        expect(verifyInclusion(i, s, l, p, r), `${index}/${v.size}: ${desc}`).toBe(false);
      }
    }
  });

  it('match the reference_test.go vectors', () => {
    for (const v of TD_REF_INCLUSION_PROOFS) expect(hex(tree.inclusionProof(v.index, v.size))).toEqual(v.proof);
  });

  it('accept every CCTV valid vector and reject every CCTV invalid one', () => {
    const cctv = treeOf(cctvLeaves);
    for (const v of CCTV_INCLUSION_VALID) {
      const args = [v.leaf_index, v.tree_size, fromBase64(v.leaf_hash), v.inclusion_path.map(fromBase64), fromBase64(v.root_hash)] as const;
      expect(verifyInclusion(...args)).toBe(true);
      expect(tree && cctv.inclusionProof(v.leaf_index, v.tree_size).map(toBase64)).toEqual(v.inclusion_path);
    }
    for (const v of CCTV_INCLUSION_INVALID) {
      expect(verifyInclusion(v.leaf_index, v.tree_size, fromBase64(v.leaf_hash), v.inclusion_path.map(fromBase64), fromBase64(v.root_hash)), v.comment).toBe(false);
    }
  });

  it('for every leaf of every tree up to 33 leaves: equal the RFC definition, verify, and fail every corruption', () => {
    const data = Array.from({ length: 33 }, (_, i) => utf8(`entry-${i}`));
    const big = treeOf(data);
    for (let size = 1; size <= data.length; size++) {
      const root = big.root(size);
      for (let index = 0; index < size; index++) {
        const proof = big.inclusionProof(index, size);
        expect(hex(proof), `${index}/${size}`).toEqual(hex(refPATH(index, data.slice(0, size))));
        const leaf = big.leafHash(index);
        expect(verifyInclusion(index, size, leaf, proof, root, sha256)).toBe(true);
        for (const [desc, i, s, r, l, p] of inclusionProbes(index, size, proof, root, leaf)) {
          expect(verifyInclusion(i, s, l, p, r, nodeSha256), `${index}/${size}: ${desc}`).toBe(false);
        }
      }
    }
  });

  it('agree with the RFC definition on a 1000-leaf tree at sampled points', () => {
    const data = Array.from({ length: 1000 }, (_, i) => utf8(`e${i}`));
    const big = treeOf(data);
    for (const [index, size] of [[0, 1000], [999, 1000], [511, 512], [512, 513], [300, 777], [17, 18], [640, 641]] as const) {
      expect(hex(big.inclusionProof(index, size))).toEqual(hex(refPATH(index, data.slice(0, size))));
      expect(verifyInclusion(index, size, big.leafHash(index), big.inclusionProof(index, size), big.root(size), nodeSha256)).toBe(true);
    }
  });

  it('are refused for indexes outside the tree', () => {
    expect(() => tree.inclusionProof(8, 8)).toThrow(RangeError);
    expect(() => tree.inclusionProof(-1, 8)).toThrow(RangeError);
    expect(() => tree.inclusionProof(0, 9)).toThrow(RangeError);
    expect(() => rootFromInclusionProof(0, 0, emptyRoot(), [])).toThrow(ProofError);
    expect(() => rootFromInclusionProof(1.5, 4, emptyRoot(), [])).toThrow(ProofError);
    expect(verifyInclusion(0, 1, emptyRoot(), [], new Uint8Array(0))).toBe(false);
  });
});

describe('consistency proofs', () => {
  const tree = treeOf(tdLeaves);

  it('match and verify the verify_test.go vectors, and every corruption of them fails', () => {
    for (const v of TD_CONSISTENCY_PROOFS) {
      const proof = v.proof.map(fromHex);
      const r1 = fromHex(TD_ROOTS_HEX[v.size1]!);
      const r2 = fromHex(TD_ROOTS_HEX[v.size2]!);
      expect(hex(tree.consistencyProof(v.size1, v.size2))).toEqual(v.proof);
      expect(verifyConsistency(v.size1, v.size2, proof, r1, r2)).toBe(true);
      if (proof.length === 0) continue;
      for (const [desc, s1, s2, a, b, p] of consistencyProbes(v.size1, v.size2, r1, r2, proof)) {
        expect(verifyConsistency(s1, s2, p, a, b), `${v.size1}->${v.size2}: ${desc}`).toBe(false);
      }
    }
  });

  it('accept every CCTV valid vector and reject every CCTV invalid one', () => {
    const cctv = treeOf(cctvLeaves);
    for (const v of CCTV_CONSISTENCY_VALID) {
      expect(verifyConsistency(v.old_size, v.new_size, v.consistency_path.map(fromBase64), fromBase64(v.old_root), fromBase64(v.new_root))).toBe(true);
      expect(cctv.consistencyProof(v.old_size, v.new_size).map(toBase64)).toEqual(v.consistency_path);
    }
    for (const v of CCTV_CONSISTENCY_INVALID) {
      const ok = verifyConsistency(v.old_size, v.new_size, v.consistency_path.map(fromBase64), fromBase64(v.old_root), fromBase64(v.new_root));
      expect(ok, `${v.old_size}->${v.new_size} ${v.comment}`).toBe(false);
    }
  });

  it('for every pair of sizes up to 33: equal the RFC definition, verify, and fail every corruption', () => {
    const data = Array.from({ length: 33 }, (_, i) => utf8(`entry-${i}`));
    const big = treeOf(data);
    for (let size2 = 0; size2 <= data.length; size2++) {
      for (let size1 = 0; size1 <= size2; size1++) {
        const proof = big.consistencyProof(size1, size2);
        expect(hex(proof), `${size1}->${size2}`).toEqual(hex(refPROOF(size1, data.slice(0, size2))));
        const r1 = big.root(size1);
        const r2 = big.root(size2);
        expect(verifyConsistency(size1, size2, proof, r1, r2, sha256), `${size1}->${size2}`).toBe(true);
        if (size1 === 0 || size1 === size2) continue;
        for (const [desc, s1, s2, a, b, p] of consistencyProbes(size1, size2, r1, r2, proof)) {
          expect(verifyConsistency(s1, s2, p, a, b, nodeSha256), `${size1}->${size2}: ${desc}`).toBe(false);
        }
      }
    }
  });

  it('agree with the RFC definition on a 1000-leaf tree at sampled points', () => {
    const data = Array.from({ length: 1000 }, (_, i) => utf8(`e${i}`));
    const big = treeOf(data);
    for (const [s1, s2] of [[1, 1000], [512, 1000], [513, 1000], [999, 1000], [16, 17], [300, 777], [256, 512]] as const) {
      const proof = big.consistencyProof(s1, s2);
      expect(hex(proof)).toEqual(hex(refPROOF(s1, data.slice(0, s2))));
      expect(verifyConsistency(s1, s2, proof, big.root(s1), big.root(s2), nodeSha256)).toBe(true);
    }
  });

  it('say why they fail', () => {
    const r = tree.root(8);
    expect(() => checkConsistency(9, 8, [], r, r)).toThrow('exceeds');
    expect(() => checkConsistency(4, 8, [], tree.root(4), r)).toThrow('empty');
    expect(() => checkConsistency(0, 8, [], r, r)).toThrow('empty tree');
    expect(() => tree.consistencyProof(9, 8)).toThrow(RangeError);
    expect(() => tree.consistencyProof(3, 9)).toThrow(RangeError);
  });
});

/**
 * RFC 6962 Merkle tree hashing, proofs and their verification (RFC 9162 §2.1). Portable: the
 * hash function is passed in (default: the plain-TypeScript SHA-256; Node code passes
 * node:crypto's), so the same code runs in the server, the CLI and a browser.
 *
 *   leaf hash = SHA-256(0x00 || entry bytes)        node hash = SHA-256(0x01 || left || right)
 *
 * Sizes and indexes are JavaScript numbers (safe integers, up to 2^53 - 1 leaves); no bit
 * operators are used on them, since those truncate to 32 bits.
 */
import { bytesEqual } from './bytes.ts';
import { sha256, type HashFn } from './sha256.ts';

export type { HashFn };
export const HASH_SIZE = 32;

/** A proof, an index or a size that cannot be right; `reason` says which check failed. */
export class ProofError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'ProofError';
  }
}

const LEAF_PREFIX = new Uint8Array([0x00]);

export function hashLeaf(data: Uint8Array, hash: HashFn = sha256): Uint8Array {
  const buf = new Uint8Array(1 + data.length);
  buf.set(LEAF_PREFIX, 0);
  buf.set(data, 1);
  return hash(buf);
}

export function hashChildren(left: Uint8Array, right: Uint8Array, hash: HashFn = sha256): Uint8Array {
  const buf = new Uint8Array(1 + left.length + right.length);
  buf[0] = 0x01;
  buf.set(left, 1);
  buf.set(right, 1 + left.length);
  return hash(buf);
}

/** The root of the empty tree: SHA-256 of the empty string. */
export function emptyRoot(hash: HashFn = sha256): Uint8Array {
  return hash(new Uint8Array(0));
}

/** The largest power of two strictly smaller than n (n >= 2): RFC 6962's split point k. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

const half = (n: number) => Math.floor(n / 2);
const isOdd = (n: number) => n % 2 === 1;

function checkSize(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new ProofError(`${what} must be a non-negative safe integer`);
}

function checkHash(value: Uint8Array, what: string): void {
  if (!(value instanceof Uint8Array) || value.length !== HASH_SIZE) throw new ProofError(`${what} must be ${HASH_SIZE} bytes`);
}

/**
 * RFC 9162 §2.1.3.2: the root hash an inclusion proof leads to. Throws ProofError when the
 * proof's shape cannot fit the index and size (index beyond the tree, proof too long or short).
 */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  hash: HashFn = sha256,
): Uint8Array {
  checkSize(index, 'leaf index');
  checkSize(size, 'tree size');
  if (index >= size) throw new ProofError(`leaf index ${index} is not below tree size ${size}`);
  checkHash(leafHash, 'leaf hash');
  proof.forEach((p, i) => checkHash(p, `proof[${i}]`));
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw new ProofError('inclusion proof is too long');
    if (isOdd(fn) || fn === sn) {
      r = hashChildren(p, r, hash);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = hashChildren(r, p, hash);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError('inclusion proof is too short');
  return r;
}

/** Throws ProofError unless `proof` proves the leaf at `index` is in the tree of `size` with `root`. */
export function checkInclusion(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
  hash: HashFn = sha256,
): void {
  checkHash(root, 'root hash');
  const computed = rootFromInclusionProof(index, size, leafHash, proof, hash);
  if (!bytesEqual(computed, root)) throw new ProofError('inclusion proof does not lead to the root hash');
}

export function verifyInclusion(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
  hash: HashFn = sha256,
): boolean {
  try {
    checkInclusion(index, size, leafHash, proof, root, hash);
    return true;
  } catch (err) {
    if (err instanceof ProofError) return false;
    throw err;
  }
}

/**
 * RFC 9162 §2.1.4.2: throws ProofError unless `proof` shows the tree of `size1` with `root1` is a
 * prefix of the tree of `size2` with `root2`. The empty tree's root must be SHA-256("").
 */
export function checkConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
  hash: HashFn = sha256,
): void {
  checkSize(size1, 'first tree size');
  checkSize(size2, 'second tree size');
  checkHash(root1, 'first root hash');
  checkHash(root2, 'second root hash');
  proof.forEach((p, i) => checkHash(p, `proof[${i}]`));
  if (size1 > size2) throw new ProofError(`first tree size ${size1} exceeds second tree size ${size2}`);
  if (size1 === 0) {
    if (!bytesEqual(root1, emptyRoot(hash))) throw new ProofError('the root of the empty tree must be SHA-256 of the empty string');
    if (proof.length > 0) throw new ProofError('consistency proof from the empty tree must be empty');
    if (size2 === 0 && !bytesEqual(root2, root1)) throw new ProofError('root hashes differ for the same tree size');
    return;
  }
  if (size1 === size2) {
    if (proof.length > 0) throw new ProofError('consistency proof between equal sizes must be empty');
    if (!bytesEqual(root1, root2)) throw new ProofError('root hashes differ for the same tree size');
    return;
  }
  if (proof.length === 0) throw new ProofError('consistency proof is empty');
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : proof;
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) throw new ProofError('consistency proof is too long');
    if (isOdd(fn) || fn === sn) {
      fr = hashChildren(c, fr, hash);
      sr = hashChildren(c, sr, hash);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = hashChildren(sr, c, hash);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new ProofError('consistency proof is too short');
  if (!bytesEqual(fr, root1)) throw new ProofError('consistency proof does not lead to the first root hash');
  if (!bytesEqual(sr, root2)) throw new ProofError('consistency proof does not lead to the second root hash');
}

export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
  hash: HashFn = sha256,
): boolean {
  try {
    checkConsistency(size1, size2, proof, root1, root2, hash);
    return true;
  } catch (err) {
    if (err instanceof ProofError) return false;
    throw err;
  }
}

/**
 * The root of a growing tree in O(log n) memory: the hashes of its complete subtrees, largest
 * first (the verifier streams a million leaves through it without keeping them).
 */
export class CompactRange {
  private readonly hashes: Uint8Array[] = [];
  private readonly heights: number[] = [];
  private count = 0;

  constructor(private readonly hash: HashFn = sha256) {}

  get size(): number {
    return this.count;
  }

  append(leafHash: Uint8Array): void {
    let h = leafHash;
    let height = 0;
    while (this.heights.length > 0 && this.heights[this.heights.length - 1] === height) {
      h = hashChildren(this.hashes.pop()!, h, this.hash);
      this.heights.pop();
      height++;
    }
    this.hashes.push(h);
    this.heights.push(height);
    this.count++;
  }

  root(): Uint8Array {
    if (this.hashes.length === 0) return emptyRoot(this.hash);
    let r = this.hashes[this.hashes.length - 1]!;
    for (let i = this.hashes.length - 2; i >= 0; i--) r = hashChildren(this.hashes[i]!, r, this.hash);
    return r;
  }
}

/** An append-only array of 32-byte hashes in one growable buffer. */
class HashArray {
  private buf = new Uint8Array(HASH_SIZE * 1024);
  length = 0;

  push(h: Uint8Array): void {
    if ((this.length + 1) * HASH_SIZE > this.buf.length) {
      const bigger = new Uint8Array(this.buf.length * 2);
      bigger.set(this.buf);
      this.buf = bigger;
    }
    this.buf.set(h, this.length * HASH_SIZE);
    this.length++;
  }

  get(i: number): Uint8Array {
    return this.buf.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  }

  get bytes(): number {
    return this.buf.length;
  }
}

/**
 * Levels below this one (other than the leaves) are recomputed on demand from at most 2^3
 * leaves instead of being stored: memory is about 36 bytes per leaf instead of 64.
 */
const FIRST_STORED_LEVEL = 4;

/**
 * An in-memory RFC 6962 tree over leaf hashes, with root hashes for any earlier size and
 * inclusion and consistency proofs built exactly as RFC 6962 §2.1.1 and §2.1.2 define them.
 */
export class MerkleTree {
  private readonly levels: (HashArray | undefined)[] = [new HashArray()];

  constructor(private readonly hash: HashFn = sha256) {}

  get size(): number {
    return this.levels[0]!.length;
  }

  /** Approximate memory held, in bytes. */
  get memoryBytes(): number {
    return this.levels.reduce((sum, l) => sum + (l?.bytes ?? 0), 0);
  }

  append(leafHash: Uint8Array): void {
    if (leafHash.length !== HASH_SIZE) throw new TypeError(`a leaf hash is ${HASH_SIZE} bytes`);
    this.levels[0]!.push(leafHash);
    const size = this.size;
    // Store every complete subtree this leaf finishes, at the stored levels.
    for (let level = FIRST_STORED_LEVEL, width = 2 ** FIRST_STORED_LEVEL; size % width === 0; level++, width *= 2) {
      const index = size / width - 1;
      const node = hashChildren(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1), this.hash);
      (this.levels[level] ??= new HashArray()).push(node);
    }
  }

  leafHash(index: number): Uint8Array {
    this.checkIndex(index, this.size, 'leaf index');
    return this.levels[0]!.get(index).slice();
  }

  /** The root hash of the tree's first `size` leaves. */
  root(size: number = this.size): Uint8Array {
    this.checkSize(size);
    if (size === 0) return emptyRoot(this.hash);
    return this.rangeHash(0, size).slice();
  }

  /** RFC 6962 §2.1.1 PATH(m, D[0:size]). */
  inclusionProof(index: number, size: number = this.size): Uint8Array[] {
    this.checkSize(size);
    this.checkIndex(index, size, 'leaf index');
    const proof: Uint8Array[] = [];
    this.path(index, 0, size, proof);
    return proof.map((p) => p.slice());
  }

  /** RFC 6962 §2.1.2 PROOF(size1, D[0:size2]). Empty when size1 is 0 or equals size2. */
  consistencyProof(size1: number, size2: number = this.size): Uint8Array[] {
    this.checkSize(size2);
    if (!Number.isSafeInteger(size1) || size1 < 0 || size1 > size2) {
      throw new RangeError(`first size ${size1} must be between 0 and ${size2}`);
    }
    const proof: Uint8Array[] = [];
    if (size1 > 0) this.subproof(size1, 0, size2, true, proof);
    return proof.map((p) => p.slice());
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) {
      throw new RangeError(`tree size ${size} must be between 0 and ${this.size}`);
    }
  }

  private checkIndex(index: number, size: number, what: string): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new RangeError(`${what} ${index} must be below ${size}`);
    }
  }

  /** The hash of the complete subtree at `level` (2^level leaves) number `index`. */
  private node(level: number, index: number): Uint8Array {
    const stored = this.levels[level];
    if (level === 0 || stored) return stored!.get(index);
    return hashChildren(this.node(level - 1, 2 * index), this.node(level - 1, 2 * index + 1), this.hash);
  }

  /** MTH(D[start:end]), RFC 6962 §2.1. */
  private rangeHash(start: number, end: number): Uint8Array {
    const n = end - start;
    if (n === 1) return this.levels[0]!.get(start);
    if (isPowerOfTwo(n) && start % n === 0) return this.node(Math.log2(n), start / n);
    const k = splitPoint(n);
    return hashChildren(this.rangeHash(start, start + k), this.rangeHash(start + k, end), this.hash);
  }

  private path(m: number, start: number, end: number, out: Uint8Array[]): void {
    const n = end - start;
    if (n === 1) return;
    const k = splitPoint(n);
    if (m < k) {
      this.path(m, start, start + k, out);
      out.push(this.rangeHash(start + k, end));
    } else {
      this.path(m - k, start + k, end, out);
      out.push(this.rangeHash(start, start + k));
    }
  }

  private subproof(m: number, start: number, end: number, b: boolean, out: Uint8Array[]): void {
    const n = end - start;
    if (m === n) {
      if (!b) out.push(this.rangeHash(start, end));
      return;
    }
    const k = splitPoint(n);
    if (m <= k) {
      this.subproof(m, start, start + k, b, out);
      out.push(this.rangeHash(start + k, end));
    } else {
      this.subproof(m - k, start + k, end, false, out);
      out.push(this.rangeHash(start, start + k));
    }
  }
}

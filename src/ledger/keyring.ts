/**
 * The ledger's signing keys (Node): Ed25519, each with an id (its RFC 7638 thumbprint). One key
 * is active and signs checkpoints and verification records; rotation retires it, erases its
 * private half and keeps its public half, so everything it signed stays verifiable.
 *
 *   <dir>/ledger-signing-keys.json   0600, private: every key, the active one with its seed
 *   <dir>/jwks.json                  0644, public: the JWKS to hand to auditors
 *
 * A fresh install generates its key on first start and logs it (never the private half).
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign as nodeSign, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, stat, link, unlink } from 'node:fs/promises';
import path from 'node:path';
import { SignJWT, type JWTPayload } from 'jose';
import { z } from 'zod';
import type { Logger } from '../logger.ts';
import { fromBase64Url, toBase64Url } from './bytes.ts';
import { ed25519Thumbprint, publicJwk, type Jwks, type LedgerPublicKey } from './keys.ts';
import { formatVerifierKey, noteKey, type NoteKey, type NoteSigner } from './note.ts';

export const KEY_FILE = 'ledger-signing-keys.json';
export const JWKS_FILE = 'jwks.json';

const b64url32 = z.string().refine((s) => {
  try {
    return fromBase64Url(s).length === 32;
  } catch {
    return false;
  }
}, 'expected 32 bytes in base64url');

const storedKeySchema = z.object({
  kid: z.string(),
  publicKey: b64url32,
  privateKey: b64url32.optional(),
  status: z.enum(['active', 'retired']),
  createdAt: z.string(),
  retiredAt: z.string().optional(),
});
const keyFileSchema = z.object({
  format: z.literal('videoteller-keyring'),
  version: z.literal(1),
  keys: z.array(storedKeySchema).min(1),
});
type StoredKey = z.infer<typeof storedKeySchema>;
type KeyFile = z.infer<typeof keyFileSchema>;

export interface KeyInfo {
  kid: string;
  publicKey: Uint8Array;
  status: 'active' | 'retired';
  createdAt: string;
  retiredAt?: string;
}

export class KeyRingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyRingError';
  }
}

interface ActiveKey {
  kid: string;
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

export class KeyRing {
  private constructor(
    readonly dir: string,
    private data: KeyFile,
    private activeKey: ActiveKey,
    private readonly log: Logger,
  ) {}

  get file(): string {
    return path.join(this.dir, KEY_FILE);
  }

  /** Loads the key ring from `dir`, generating the first key if there is none. */
  static async open(opts: { dir: string; log: Logger }): Promise<KeyRing> {
    const { dir, log } = opts;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, KEY_FILE);
    let data = await readKeyFile(file);
    if (!data) {
      const key = generateKey();
      const fresh: KeyFile = { format: 'videoteller-keyring', version: 1, keys: [key.stored] };
      if (await createKeyFile(dir, fresh)) {
        log.info({ file, kid: key.stored.kid }, 'generated the ledger signing key on first start (Ed25519)');
        data = fresh;
      } else {
        data = await readKeyFile(file); // another process created it first
        if (!data) throw new KeyRingError(`${file} disappeared while starting`);
      }
    }
    const ring = new KeyRing(dir, data, activeFrom(data, file), log);
    await ring.writeJwks();
    log.info({ kid: ring.activeKey.kid, keys: data.keys.length }, 'ledger key ring loaded');
    return ring;
  }

  get activeKid(): string {
    return this.activeKey.kid;
  }

  /** Every key, active and retired, oldest first. */
  keys(): KeyInfo[] {
    return this.data.keys.map((k) => ({
      kid: k.kid,
      publicKey: fromBase64Url(k.publicKey),
      status: k.status,
      createdAt: k.createdAt,
      ...(k.retiredAt ? { retiredAt: k.retiredAt } : {}),
    }));
  }

  publicKeys(): LedgerPublicKey[] {
    return this.keys().map(({ kid, publicKey }) => ({ kid, publicKey }));
  }

  jwks(): Jwks {
    return { keys: this.keys().map((k) => publicJwk(k.publicKey)) };
  }

  /** Signed-note keys for checkpoints of `origin`: all of them, for verification. */
  noteKeys(origin: string): NoteKey[] {
    return this.keys().map((k) => noteKey(origin, k.publicKey));
  }

  /** Verifier key strings (`origin+keyid+base64`), active key first. */
  verifierKeys(origin: string): { kid: string; status: 'active' | 'retired'; vkey: string }[] {
    return this.keys()
      .sort((a, b) => (a.status === 'active' ? -1 : b.status === 'active' ? 1 : 0))
      .map((k) => ({ kid: k.kid, status: k.status, vkey: formatVerifierKey(noteKey(origin, k.publicKey)) }));
  }

  /** The active key as a signed-note signer for checkpoints of `origin`. */
  noteSigner(origin: string): NoteSigner {
    const active = this.activeKey;
    const key = noteKey(origin, active.publicKey);
    return {
      name: key.name,
      keyId: key.keyId,
      sign: (message) => new Uint8Array(nodeSign(null, message, active.privateKey)),
    };
  }

  /** A JWS (compact, EdDSA, kid = active key) over `claims`. */
  async signJwt(claims: JWTPayload, typ: string): Promise<{ jws: string; kid: string }> {
    const active = this.activeKey;
    const jws = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: active.kid, typ }).sign(active.privateKey);
    return { jws, kid: active.kid };
  }

  /**
   * Generates a new active key; the previous one is retired and its private half erased. Its
   * public half stays in the JWKS, so earlier checkpoints and records still verify.
   */
  async rotate(): Promise<KeyInfo> {
    const now = new Date().toISOString();
    const key = generateKey();
    const next: KeyFile = {
      ...this.data,
      keys: [
        ...this.data.keys.map((k): StoredKey => (k.status === 'active' ? { kid: k.kid, publicKey: k.publicKey, status: 'retired', createdAt: k.createdAt, retiredAt: now } : k)),
        key.stored,
      ],
    };
    await replaceKeyFile(this.dir, next);
    const previous = this.activeKey.kid;
    this.data = next;
    this.activeKey = activeFrom(next, this.file);
    await this.writeJwks();
    this.log.info({ kid: key.stored.kid, previous }, 'rotated the ledger signing key; the previous public key stays published');
    return this.keys().find((k) => k.kid === key.stored.kid)!;
  }

  private async writeJwks(): Promise<void> {
    await writeFileAtomic(path.join(this.dir, JWKS_FILE), JSON.stringify(this.jwks(), null, 2) + '\n', 0o644);
  }
}

function generateKey(): { stored: StoredKey } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' }) as { d: string; x: string };
  const pub = fromBase64Url(jwk.x);
  return {
    stored: { kid: ed25519Thumbprint(pub), publicKey: jwk.x, privateKey: jwk.d, status: 'active', createdAt: new Date().toISOString() },
  };
}

function activeFrom(data: KeyFile, file: string): ActiveKey {
  const active = data.keys.filter((k) => k.status === 'active');
  if (active.length !== 1) throw new KeyRingError(`${file} must have exactly one active key, has ${active.length}`);
  const k = active[0]!;
  if (!k.privateKey) throw new KeyRingError(`${file}: the active key ${k.kid} has no private key`);
  const publicKey = fromBase64Url(k.publicKey);
  if (ed25519Thumbprint(publicKey) !== k.kid) throw new KeyRingError(`${file}: key id ${k.kid} is not the thumbprint of its key`);
  const privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.publicKey, d: k.privateKey }, format: 'jwk' });
  // The private half must belong to the public half recorded beside it.
  const derived = (privateKey.export({ format: 'jwk' }) as { x: string }).x;
  if (derived !== toBase64Url(publicKey)) throw new KeyRingError(`${file}: the private key of ${k.kid} does not match its public key`);
  for (const other of data.keys) {
    if (ed25519Thumbprint(fromBase64Url(other.publicKey)) !== other.kid) throw new KeyRingError(`${file}: key id ${other.kid} is not the thumbprint of its key`);
  }
  return { kid: k.kid, publicKey, privateKey };
}

async function readKeyFile(file: string): Promise<KeyFile | undefined> {
  let text: string;
  try {
    const st = await stat(file);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw new KeyRingError(`${file} is readable by other users (mode ${(st.mode & 0o777).toString(8)}): run chmod 600 on it`);
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new KeyRingError(`${file} is not JSON`);
  }
  const parsed = keyFileSchema.safeParse(json);
  if (!parsed.success) throw new KeyRingError(`${file} is not a valid key ring: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data;
}

async function writeTemp(dir: string, name: string, content: string, mode: number): Promise<string> {
  const tmp = path.join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return tmp;
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Creates the key file only if absent (link fails on an existing name); false if it existed. */
async function createKeyFile(dir: string, data: KeyFile): Promise<boolean> {
  const tmp = await writeTemp(dir, KEY_FILE, JSON.stringify(data, null, 2) + '\n', 0o600);
  try {
    await link(tmp, path.join(dir, KEY_FILE));
    await syncDir(dir);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function replaceKeyFile(dir: string, data: KeyFile): Promise<void> {
  await writeFileAtomic(path.join(dir, KEY_FILE), JSON.stringify(data, null, 2) + '\n', 0o600);
}

export async function writeFileAtomic(file: string, content: string, mode: number): Promise<void> {
  const dir = path.dirname(file);
  const tmp = await writeTemp(dir, path.basename(file), content, mode);
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dir);
}

/**
 * The bank system's reference photo over HTTP, on the real server with the real face engine
 * (one worker) and real faces cropped from face-api's demo photos: PUT /api/sessions/:id/
 * reference-photo with the raw bytes, and POST /api/sessions with a base64 `referencePhoto`.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { PNG } from 'pngjs';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installErrorHandler } from '../../src/http/errors.ts';
import { referenceHttpError } from '../../src/http/reference-photo.ts';
import { EngineError } from '../../src/identity/engine.ts';
import type { RgbImage } from '../../src/identity/image.ts';
import { backgroundPatch, encodeJpeg, faceSquare, fixtureFaces, loadSample, samplePath } from '../fixtures/faces/samples.ts';
import { createSession, startTestServer, TEST_API_KEY, type TestServer } from '../helpers/server.ts';

const OTHER_BANK_KEY = 'other-bank-api-key-0123456789';
const validSession = { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-PHOTO-1' };

let server: TestServer;

function face(id: string): RgbImage {
  const f = fixtureFaces().faces.find((x) => x.id === id)!;
  return faceSquare(loadSample(f.sample), f.box);
}

function encodePng(img: RgbImage): Buffer {
  const png = new PNG({ width: img.width, height: img.height });
  for (let i = 0, j = 0; i < img.data.length; i += 3, j += 4) {
    png.data[j] = img.data[i]!;
    png.data[j + 1] = img.data[i + 1]!;
    png.data[j + 2] = img.data[i + 2]!;
    png.data[j + 3] = 255;
  }
  return PNG.sync.write(png);
}

function solidPng(width: number, height: number, rgb: [number, number, number]): Buffer {
  const png = new PNG({ width, height });
  for (let j = 0; j < png.data.length; j += 4) {
    png.data[j] = rgb[0];
    png.data[j + 1] = rgb[1];
    png.data[j + 2] = rgb[2];
    png.data[j + 3] = 255;
  }
  return PNG.sync.write(png);
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const goodJpeg = encodeJpeg(face('s6f2'), 92);
const goodPng = encodePng(face('s1f0'));
const groupJpeg = fs.readFileSync(samplePath(1));
const backgroundJpeg = encodeJpeg(backgroundPatch(1, { x: 1500, y: 800, width: 400, height: 450 }), 90);
const greyPng = solidPng(300, 400, [128, 128, 128]);

interface ApiResult {
  status: number;
  headers: Headers;
  body: { error?: { code: string; message: string; reason?: string } } & Record<string, unknown>;
}

async function putPhoto(
  srv: TestServer,
  sessionId: string,
  bytes: Uint8Array | string,
  contentType = 'image/jpeg',
  apiKey: string | null = srv.apiKey,
): Promise<ApiResult> {
  const headers: Record<string, string> = { 'content-type': contentType };
  if (apiKey) headers['x-api-key'] = apiKey;
  const res = await fetch(`${srv.url}/api/sessions/${sessionId}/reference-photo`, { method: 'PUT', headers, body: typeof bytes === 'string' ? bytes : new Uint8Array(bytes) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as ApiResult['body'] };
}

async function postSession(srv: TestServer, body: unknown): Promise<ApiResult> {
  const res = await fetch(`${srv.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': srv.apiKey },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as ApiResult['body'] };
}

async function getSession(srv: TestServer, id: string) {
  const res = await fetch(`${srv.url}/api/sessions/${id}`, { headers: { 'x-api-key': srv.apiKey } });
  return (await res.json()) as Record<string, unknown>;
}

beforeAll(async () => {
  server = await startTestServer({ IDENTITY_WORKERS: '1', API_KEYS: `test-bank:${TEST_API_KEY},other-bank:${OTHER_BANK_KEY}` });
});
afterAll(async () => {
  await server?.close();
});

describe('PUT /api/sessions/:id/reference-photo', () => {
  it('attaches a JPEG: the descriptor on the session, the photo in the blob store, evidence with its hash only', async () => {
    const { sessionId } = await createSession(server, validSession);
    const res = await putPhoto(server, sessionId, goodJpeg);
    expect(res.status).toBe(200);
    const sha = sha256(goodJpeg);
    expect(res.body).toEqual({
      sessionId,
      reference: {
        sha256: sha,
        detectionScore: expect.any(Number),
        width: face('s6f2').width,
        height: face('s6f2').height,
        quality: { faceWidthPx: expect.any(Number), yawDeg: expect.any(Number), sharpness: expect.any(Number), luma: expect.any(Number) },
      },
    });
    expect((res.body.reference as { detectionScore: number }).detectionScore).toBeGreaterThan(0.9);

    const stored = await server.app.store.getSession(sessionId);
    expect(stored?.reference).toMatchObject({ sha256: sha, detectionScore: expect.any(Number), attachedAt: expect.any(Number) });
    expect(stored?.reference?.descriptor).toHaveLength(128);
    expect(stored?.reference?.descriptor.every((v) => typeof v === 'number' && Number.isFinite(v))).toBe(true);

    // The blob store holds the exact bytes under their SHA-256.
    expect(server.app.identity.blobs.pathFor(sha).startsWith(server.dataDir)).toBe(true);
    expect(fs.existsSync(server.app.identity.blobs.pathFor(sha))).toBe(true);
    expect(Buffer.compare(await server.app.identity.blobs.get(sha), goodJpeg)).toBe(0);

    const entries = await server.app.ledger.entriesOf(sessionId);
    expect(entries.map((e) => e.type)).toEqual(['session.created', 'identity.reference_photo']);
    const entry = entries[1]!;
    expect(entry.actor).toBe('api:test-bank');
    expect(entry.payload).toMatchObject({ photoSha256: sha, format: 'jpeg', model: { detector: 'ssd' } });
    // Hashes and scores only: no image bytes (raw, base64 or the descriptor) in the ledger.
    const json = JSON.stringify(entry);
    expect(json.length).toBeLessThan(2000);
    expect(json).not.toContain(goodJpeg.subarray(200, 260).toString('base64'));
    expect(json).not.toContain('descriptor"');

    expect(await getSession(server, sessionId)).toMatchObject({ reference: { sha256: sha, detectionScore: stored!.reference!.detectionScore } });
  });

  it('attaches a PNG, and a real PNG sent as image/jpeg (the content decides); replacing while queued shows both in the evidence', async () => {
    const { sessionId } = await createSession(server, validSession);
    expect(await getSession(server, sessionId)).toMatchObject({ reference: null });
    const png = await putPhoto(server, sessionId, goodPng, 'image/png');
    expect(png.status).toBe(200);
    expect(png.body).toMatchObject({ sessionId, reference: { sha256: sha256(goodPng) } });

    await server.app.store.updateSession(sessionId, (s) => ({ ...s, state: 'queued' }));
    const misnamed = encodePng(face('s6f0'));
    const replaced = await putPhoto(server, sessionId, misnamed, 'image/jpeg');
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ reference: { sha256: sha256(misnamed) } });
    expect((await server.app.store.getSession(sessionId))?.reference?.sha256).toBe(sha256(misnamed));

    const photos = (await server.app.ledger.entriesOf(sessionId)).filter((e) => e.type === 'identity.reference_photo');
    expect(photos.map((e) => [e.payload.photoSha256, e.payload.format])).toEqual([
      [sha256(goodPng), 'png'],
      [sha256(misnamed), 'png'],
    ]);
    expect(await server.app.identity.blobs.has(sha256(goodPng))).toBe(true);
  });

  it('refuses a group photo as 422 multiple_faces and keeps nothing', async () => {
    const { sessionId } = await createSession(server, validSession);
    const res = await putPhoto(server, sessionId, groupJpeg);
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'bad_request', reason: 'multiple_faces' });
    expect(res.body.error?.message).toContain('multiple_faces');
    expect((await server.app.store.getSession(sessionId))?.reference).toBeUndefined();
    expect(await server.app.identity.blobs.has(sha256(groupJpeg))).toBe(false);
    expect((await server.app.ledger.entriesOf(sessionId)).map((e) => e.type)).toEqual(['session.created']);
  });

  it('refuses a photo of the background and a solid-colour PNG as 422 no_face', async () => {
    const { sessionId } = await createSession(server, validSession);
    for (const [bytes, type] of [
      [backgroundJpeg, 'image/jpeg'],
      [greyPng, 'image/png'],
    ] as const) {
      const res = await putPhoto(server, sessionId, bytes, type);
      expect(res.status, type).toBe(422);
      expect(res.body.error).toMatchObject({ code: 'bad_request', reason: 'no_face' });
    }
  });

  it('sniffs the content: garbage, text or a GIF as image/jpeg is 415; other content types are 415', async () => {
    const { sessionId } = await createSession(server, validSession);
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251));
    for (const bytes of [garbage, Buffer.from('just some text, not a photo at all'), Buffer.from('GIF89a\x01\x00\x01\x00\x00\x00\x00;', 'latin1')]) {
      const res = await putPhoto(server, sessionId, bytes, 'image/jpeg');
      expect(res.status).toBe(415);
      expect(res.body.error).toMatchObject({ code: 'bad_request', reason: 'unsupported_type' });
    }
    expect((await putPhoto(server, sessionId, goodJpeg, 'application/octet-stream')).status).toBe(415);
    const json = await putPhoto(server, sessionId, JSON.stringify({ photo: goodJpeg.toString('base64') }), 'application/json');
    expect(json).toMatchObject({ status: 415, body: { error: { code: 'bad_request' } } });
    // A JPEG cut short is an image, but a broken one: 422 corrupt.
    const truncated = await putPhoto(server, sessionId, goodJpeg.subarray(0, 1500));
    expect(truncated).toMatchObject({ status: 422, body: { error: { reason: 'corrupt' } } });
    expect((await server.app.store.getSession(sessionId))?.reference).toBeUndefined();
  });

  it('refuses a 50-megapixel PNG from its header, before decoding it (422 too_many_pixels)', async () => {
    const { sessionId } = await createSession(server, validSession);
    // 8000 × 6250 RGB, all black: a few kB compressed, 150 MB decoded (a decompression bomb).
    const width = 8000;
    const height = 6250;
    const row = Buffer.alloc(1 + width * 3); // filter byte + pixels
    const raw = zlib.deflateSync(Buffer.concat(Array.from({ length: height }, () => row)), { level: 9 });
    const chunk = (type: string, data: Buffer) => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(zlib.crc32(body) >>> 0);
      return Buffer.concat([len, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', raw), chunk('IEND', Buffer.alloc(0))]);
    expect(png.length).toBeLessThan(1024 * 1024);
    const res = await putPhoto(server, sessionId, png, 'image/png');
    expect(res).toMatchObject({ status: 422, body: { error: { reason: 'too_many_pixels' } } });
    expect((await server.app.store.getSession(sessionId))?.reference).toBeUndefined();
  });

  it('needs the API key of the bank that created the session', async () => {
    const { sessionId } = await createSession(server, validSession);
    expect(await putPhoto(server, sessionId, goodJpeg, 'image/jpeg', null)).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    expect(await putPhoto(server, sessionId, goodJpeg, 'image/jpeg', 'wrong-key-0123456789abc')).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    expect(await putPhoto(server, sessionId, goodJpeg, 'image/jpeg', OTHER_BANK_KEY)).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect((await server.app.store.getSession(sessionId))?.reference).toBeUndefined();
  });

  it('gives 404 for an unknown session and 400 for a malformed id', async () => {
    expect(await putPhoto(server, '00000000-0000-4000-8000-000000000000', goodJpeg)).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect(await putPhoto(server, 'not-a-uuid', goodJpeg)).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
  });

  it('refuses to change the photo once the call is under way or over (409 invalid_state)', async () => {
    const { sessionId } = await createSession(server, validSession);
    for (const state of ['offered', 'in_call', 'ended'] as const) {
      await server.app.store.updateSession(sessionId, (s) => ({ ...s, state }));
      const res = await putPhoto(server, sessionId, goodJpeg);
      expect(res.status, state).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'invalid_state' });
      expect(res.body.error?.message).toContain(state);
    }
    expect((await server.app.store.getSession(sessionId))?.reference).toBeUndefined();
  });
});

describe('POST /api/sessions with referencePhoto', () => {
  it('creates the session with the photo attached (201), evidence in order', async () => {
    const res = await postSession(server, { ...validSession, referencePhoto: goodJpeg.toString('base64') });
    expect(res.status).toBe(201);
    const sessionId = res.body.sessionId as string;
    expect(res.body).toMatchObject({ customerToken: expect.any(String), reference: { sha256: sha256(goodJpeg), width: face('s6f2').width } });
    expect(await getSession(server, sessionId)).toMatchObject({ state: 'created', reference: { sha256: sha256(goodJpeg), detectionScore: expect.any(Number) } });
    expect((await server.app.store.getSession(sessionId))?.reference?.descriptor).toHaveLength(128);
    const entries = await server.app.ledger.entriesOf(sessionId);
    expect(entries.map((e) => e.type)).toEqual(['session.created', 'identity.reference_photo']);
    expect(JSON.stringify(entries[0]!.payload)).not.toContain('referencePhoto');
  });

  it('without a photo, the answer says reference: null', async () => {
    const res = await postSession(server, validSession);
    expect(res).toMatchObject({ status: 201, body: { reference: null } });
  });

  it('refuses the whole create when the photo is refused: no session, no evidence, no blob', async () => {
    const before = server.app.ledger.ledger.size;
    const grey = await postSession(server, { ...validSession, referencePhoto: greyPng.toString('base64') });
    expect(grey.status).toBe(422);
    expect(grey.body.error).toMatchObject({ code: 'bad_request', reason: 'no_face' });
    expect(grey.body.sessionId).toBeUndefined();
    const text = await postSession(server, { ...validSession, referencePhoto: Buffer.from('hello, not an image').toString('base64') });
    expect(text).toMatchObject({ status: 415, body: { error: { reason: 'unsupported_type' } } });
    const notBase64 = await postSession(server, { ...validSession, referencePhoto: 'this is not base64!' });
    expect(notBase64).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
    expect(notBase64.body.error?.message).toContain('referencePhoto');
    expect(server.app.ledger.ledger.size).toBe(before);
    expect(await server.app.identity.blobs.has(sha256(greyPng))).toBe(false);
  });

  it('still refuses an oversized JSON body that carries no photo (413)', async () => {
    const huge = await postSession(server, { ...validSession, customerRef: 'x'.repeat(2 * 1024 * 1024) });
    expect(huge).toMatchObject({ status: 413, body: { error: { code: 'too_large' } } });
    const hugeBeside = await postSession(server, { ...validSession, referencePhoto: goodJpeg.toString('base64'), note: 'x'.repeat(2 * 1024 * 1024) });
    expect(hugeBeside).toMatchObject({ status: 413, body: { error: { code: 'too_large' } } });
  });
});

describe('with a small upload limit', () => {
  let small: TestServer;
  beforeAll(async () => {
    small = await startTestServer({ IDENTITY_WORKERS: '1', IDENTITY_MAX_UPLOAD_BYTES: '4096' });
  });
  afterAll(async () => {
    await small?.close();
  });

  it('refuses a larger photo with 413 too_large, both ways, before the engine starts', async () => {
    expect(goodJpeg.length).toBeGreaterThan(4096);
    const { sessionId } = await createSession(small, validSession);
    const put = await putPhoto(small, sessionId, goodJpeg);
    expect(put).toMatchObject({ status: 413, body: { error: { code: 'too_large' } } });
    const post = await postSession(small, { ...validSession, referencePhoto: goodJpeg.toString('base64') });
    expect(post).toMatchObject({ status: 413, body: { error: { code: 'too_large' } } });
    expect(small.app.identity.started).toBe(false);
    expect((await small.app.store.getSession(sessionId))?.reference).toBeUndefined();
  });
});

describe('a busy engine', () => {
  it('maps EngineError overloaded to 503 unavailable with Retry-After (the handler the server installs)', async () => {
    // Filling the engine's queue (64 jobs) with real photos would take minutes: the mapping and
    // the error handler are checked on their own.
    const app = Fastify();
    installErrorHandler(app);
    app.get('/busy', async () => {
      throw referenceHttpError(new EngineError('overloaded', '64 analyses are already waiting'));
    });
    const res = await app.inject({ method: 'GET', url: '/busy' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.json()).toEqual({ error: { code: 'unavailable', message: expect.any(String), reason: 'overloaded' } });
    await app.close();
  });
});

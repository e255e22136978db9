import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSession, startTestServer, type TestServer } from '../helpers/server.ts';

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } & Record<string, unknown> };
}

const validSession = { businessType: 'consultation', language: 'en', priority: 1, customerRef: 'CUST-42' };

describe('POST /api/sessions', () => {
  it('creates a session with a single-use token and a join link carrying it in the fragment', async () => {
    const created = await createSession(server, validSession);
    expect(created.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.customerToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(created.joinUrl).toBe(`${server.url}/customer/#token=${created.customerToken}`);
    expect(created.expiresAt).toBeGreaterThan(Date.now());
    const res = await fetch(`${server.url}/api/sessions/${created.sessionId}`, { headers: { 'x-api-key': server.apiKey } });
    expect(await res.json()).toMatchObject({ sessionId: created.sessionId, state: 'created', businessType: 'consultation', priority: 1 });
    // The creation is evidence in the signed ledger.
    const entries = await server.app.ledger.entriesOf(created.sessionId);
    expect(entries.map((e) => e.type)).toEqual(['session.created']);
  });

  it('refuses requests without a valid API key', async () => {
    expect((await post('/api/sessions', validSession)).body.error?.code).toBe('unauthorized');
    const wrong = await post('/api/sessions', validSession, { 'x-api-key': 'not-the-key-0123456789' });
    expect(wrong).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    const viaAuth = await post('/api/sessions', validSession, { authorization: `ApiKey ${server.apiKey}` });
    expect(viaAuth.status).toBe(201);
  });

  it.each([
    ['an unknown business type', { ...validSession, businessType: 'mortgage' }, 'businessType'],
    ['a missing customer reference', { businessType: 'consultation', language: 'en' }, 'customerRef'],
    ['a priority out of range', { ...validSession, priority: 10 }, 'priority'],
    ['a fractional priority', { ...validSession, priority: 1.5 }, 'priority'],
    ['a bad language', { ...validSession, language: 'English' }, 'language'],
    ['an unexpected field', { ...validSession, photo: 'x' }, 'photo'],
    ['a customer reference with spaces', { ...validSession, customerRef: 'A B' }, 'customerRef'],
    ['an array body', [validSession], 'body'],
  ])('gives a typed 400 for %s', async (_what, body, field) => {
    const res = await post('/api/sessions', body, { 'x-api-key': server.apiKey });
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('bad_request');
    expect(res.body.error?.message).toContain(field);
  });

  it('gives typed errors for malformed JSON, huge bodies and a bad session id', async () => {
    const malformed = await post('/api/sessions', '{"businessType":', { 'x-api-key': server.apiKey });
    expect(malformed).toMatchObject({ status: 400, body: { error: { code: 'bad_request' } } });
    const huge = await post('/api/sessions', { ...validSession, customerRef: 'x'.repeat(2 * 1024 * 1024) }, { 'x-api-key': server.apiKey });
    expect(huge).toMatchObject({ status: 413, body: { error: { code: 'too_large' } } });
    const badId = await fetch(`${server.url}/api/sessions/not-a-uuid`, { headers: { 'x-api-key': server.apiKey } });
    expect(badId.status).toBe(400);
    const unknown = await fetch(`${server.url}/api/sessions/00000000-0000-4000-8000-000000000000`, { headers: { 'x-api-key': server.apiKey } });
    expect(await unknown.json()).toEqual({ error: { code: 'not_found', message: 'no such session' } });
  });
});

describe('POST /api/auth/login', () => {
  it('signs staff in and returns a JWT with role and skills, never the password hash', async () => {
    const res = await post('/api/auth/login', server.tellerLogin);
    expect(res.status).toBe(200);
    expect(res.body.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(res.body.staff).toEqual({
      id: 't-alice',
      displayName: 'Alice Teller',
      role: 'teller',
      skills: { businessTypes: ['corporate_account_opening', 'wealth_product', 'consultation'], languages: ['en', 'de'] },
      approvalScope: 'full_service',
    });
    expect(JSON.stringify(res.body)).not.toContain('scrypt');
  });

  it('refuses a wrong password and an unknown user alike, and bad bodies with 400', async () => {
    const wrong = await post('/api/auth/login', { username: 'alice', password: 'nope' });
    const unknown = await post('/api/auth/login', { username: 'mallory', password: 'nope' });
    expect(wrong).toEqual({ status: 401, body: { error: { code: 'unauthorized', message: 'wrong username or password' } } });
    expect(unknown).toEqual(wrong);
    expect((await post('/api/auth/login', { username: 'alice' })).status).toBe(400);
    expect((await post('/api/auth/login', 'null')).status).toBe(400);
  });
});

describe('health', () => {
  it('answers liveness and readiness, and unknown routes with a typed 404', async () => {
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    const missing = await fetch(`${server.url}/api/nothing`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});

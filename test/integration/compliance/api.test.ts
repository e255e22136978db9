/**
 * The compliance API on the real server: sessions made by real calls over signaling, listed from
 * the ledger with filters and paging; every endpoint's bad input is a typed error that writes
 * nothing; only the compliance role gets in (tellers, supervisors, customers and API keys do not).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { FRAME_OVERHEAD, HEADER_BYTES, scanFrames } from '../../../src/ledger/segments.ts';
import { verifyBundle, verifySessionEvidence } from '../../../src/ledger/bundle.ts';
import { SessionIndex } from '../../../src/compliance/session-index.ts';
import { callInProgress } from '../../helpers/call.ts';
import { createSession, startTestServer, type TestServer } from '../../helpers/server.ts';
import { SocketClients } from '../../helpers/socket.ts';
import { bearer, decidedCall, get, token } from './helpers.ts';

let server: TestServer;
const clients = new SocketClients(() => server.url);
let carol: string;
const ids: Record<string, string> = {};

interface ListBody {
  total: number;
  offset: number;
  limit: number;
  ledgerSize: number;
  sessions: { sessionId: string; businessType: string; decision: string | null; tellers: string[]; decidedBy: string | null; createdAt: string; record: { index: number } | null; entries: number }[];
}

async function list(query = ''): Promise<ListBody> {
  const res = await get(server, `/api/compliance/sessions${query}`, bearer(carol));
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as ListBody;
}

beforeAll(async () => {
  server = await startTestServer();
  carol = await token(server, 'carol');
  ids.aliceApproved = await decidedCall(clients, server, { teller: 'alice', businessType: 'consultation', decision: 'approved' });
  ids.aliceRejected = await decidedCall(clients, server, { teller: 'alice', businessType: 'corporate_account_opening', decision: 'rejected' });
  ids.danaApproved = await decidedCall(clients, server, { teller: 'dana', businessType: 'wealth_product', decision: 'approved' });
  ids.danaUndecided = await decidedCall(clients, server, { teller: 'dana', businessType: 'consultation', decision: 'none' });
  ids.neverJoined = (await createSession(server, { businessType: 'consultation', language: 'en', priority: 0, customerRef: 'CUST-NJ' })).sessionId;
}, 120_000);

afterAll(async () => {
  clients.closeAll();
  await server?.close();
});

describe('GET /api/compliance/sessions: from the ledger, filtered and paged', () => {
  it('lists every session with what the ledger says about it, newest first', async () => {
    const body = await list();
    expect(body.total).toBe(5);
    expect(body.ledgerSize).toBe(server.app.ledger.ledger.size);
    expect(body.sessions.map((s) => s.sessionId)).toEqual([ids.neverJoined, ids.danaUndecided, ids.danaApproved, ids.aliceRejected, ids.aliceApproved]);
    const approved = body.sessions.find((s) => s.sessionId === ids.aliceApproved)!;
    expect(approved).toMatchObject({ businessType: 'consultation', decision: 'approved', tellers: ['t-alice'], decidedBy: 't-alice' });
    const entries = await server.app.ledger.entriesOf(ids.aliceApproved!);
    expect(approved.entries).toBe(entries.length);
    expect(approved.record!.index).toBe(entries.find((e) => e.type === 'record.issued')!.index);
  });

  it('filters by teller, decision, business type and date', async () => {
    expect((await list('?teller=t-dana')).sessions.map((s) => s.sessionId).sort()).toEqual([ids.danaApproved, ids.danaUndecided].sort());
    expect((await list('?decision=approved')).sessions.map((s) => s.sessionId).sort()).toEqual([ids.aliceApproved, ids.danaApproved].sort());
    expect((await list('?decision=rejected')).sessions.map((s) => s.sessionId)).toEqual([ids.aliceRejected]);
    expect((await list('?decision=none')).sessions.map((s) => s.sessionId).sort()).toEqual([ids.danaUndecided, ids.neverJoined].sort());
    expect((await list('?businessType=consultation&teller=t-alice')).sessions.map((s) => s.sessionId)).toEqual([ids.aliceApproved]);
    expect((await list('?teller=t-bob')).total).toBe(0);

    const all = await list();
    const created = all.sessions.map((s) => s.createdAt);
    const today = created[0]!.slice(0, 10);
    expect((await list(`?from=${today}&to=${today}`)).total).toBe(5);
    const next = new Date(Date.parse(`${today}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
    expect((await list(`?from=${next}`)).total).toBe(0);
    // An instant between two sessions' creation splits them.
    const newest = all.sessions[0]!.createdAt;
    expect((await list(`?from=${encodeURIComponent(newest)}`)).sessions.map((s) => s.sessionId)).toEqual([ids.neverJoined]);
    expect((await list(`?to=${encodeURIComponent(newest)}`)).total).toBe(4);
  });

  it('pages with offset and limit, without gaps or repeats', async () => {
    const all = (await list()).sessions.map((s) => s.sessionId);
    const seen: string[] = [];
    for (let offset = 0; offset < 5; offset += 2) {
      const page = await list(`?limit=2&offset=${offset}`);
      expect(page).toMatchObject({ total: 5, offset, limit: 2 });
      seen.push(...page.sessions.map((s) => s.sessionId));
    }
    expect(seen).toEqual(all);
    expect((await list('?offset=5')).sessions).toEqual([]);
  });

  it('keeps up with the ledger incrementally: a new session appears on the next request', async () => {
    const before = await list();
    const { sessionId } = await createSession(server, { businessType: 'wealth_product', language: 'en', priority: 0, customerRef: 'CUST-NEW' });
    const after = await list();
    expect(after.total).toBe(before.total + 1);
    expect(after.sessions[0]!.sessionId).toBe(sessionId);
    ids.late = sessionId;
  });

  it('an index built from scratch over the same ledger agrees with the live one (nothing comes from the session store)', async () => {
    const fresh = new SessionIndex(server.app.ledger.ledger);
    await fresh.refresh();
    const live = await list('?limit=100');
    expect(fresh.query({}, { offset: 0, limit: 100 }).sessions.map((s) => s.sessionId)).toEqual(live.sessions.map((s) => s.sessionId));
  });
});

describe('GET /api/compliance/sessions/:id', () => {
  it('serves every entry as stored with a proof to one signed checkpoint, the keys and the record; it verifies', async () => {
    const res = await get(server, `/api/compliance/sessions/${ids.aliceApproved}`, bearer(carol));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { evidence: { entries: unknown[]; record: unknown; blobs: unknown[] }; session: { sessionId: string } };
    expect(body.session.sessionId).toBe(ids.aliceApproved);
    expect(body.evidence.entries).toHaveLength((await server.app.ledger.entriesOf(ids.aliceApproved!)).length);
    expect(body.evidence.record).not.toBeNull();
    const report = await verifySessionEvidence(body.evidence);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.record).toMatchObject({ ok: true, decision: 'approved', tellerId: 't-alice' });
    expect(report.entries.every((e) => e.ok)).toBe(true);
    // Keys the officer brings (the published JWKS) verify it too.
    const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
    const { keysFromJwks } = await import('../../../src/ledger/keys.ts');
    expect((await verifySessionEvidence(body.evidence, { trustedKeys: keysFromJwks(jwks) })).checkpoint).toMatchObject({ ok: true, keys: 'trusted' });
  });

  it('answers 404 for a session the ledger does not know, on every per-session route', async () => {
    for (const suffix of ['', '/bundle', '/recording', `/blobs/${'a'.repeat(64)}`]) {
      const res = await get(server, `/api/compliance/sessions/00000000-0000-4000-8000-000000000000${suffix}`, bearer(carol));
      expect(res.status, suffix).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
    }
  });

  it('says there is no recording for a call in which nobody sent media, and names no blob it cannot serve', async () => {
    const res = await get(server, `/api/compliance/sessions/${ids.aliceApproved}/recording`, bearer(carol));
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'not_found' } });
  });
});

describe('bad input: typed 400s, nothing written to the ledger', () => {
  const bad: [string, string][] = [
    ['list: unknown parameter', '/api/compliance/sessions?foo=1'],
    ['list: decision', '/api/compliance/sessions?decision=maybe'],
    ['list: business type', '/api/compliance/sessions?businessType=mortgage'],
    ['list: date', '/api/compliance/sessions?from=yesterday'],
    ['list: impossible date', '/api/compliance/sessions?from=2026-02-30'],
    ['list: time without zone', '/api/compliance/sessions?from=2026-11-22T10:00:00'],
    ['list: from after to', '/api/compliance/sessions?from=2026-11-23&to=2026-11-22'],
    ['list: limit 0', '/api/compliance/sessions?limit=0'],
    ['list: limit too large', '/api/compliance/sessions?limit=101'],
    ['list: negative offset', '/api/compliance/sessions?offset=-1'],
    ['list: offset not a number', '/api/compliance/sessions?offset=1e3'],
    ['list: repeated parameter', '/api/compliance/sessions?decision=approved&decision=rejected'],
    ['list: teller with a space', '/api/compliance/sessions?teller=t%20alice'],
    ['detail: bad id', '/api/compliance/sessions/not%20an%20id'],
    ['detail: unknown parameter', '/api/compliance/sessions/SESSION?x=1'],
    ['bundle: bad id', '/api/compliance/sessions/%2E%2E%2Fetc/bundle'],
    ['bundle: unknown parameter', '/api/compliance/sessions/SESSION/bundle?format=zip'],
    ['recording: participant', '/api/compliance/sessions/SESSION/recording?participant=supervisor'],
    ['recording: sha256', '/api/compliance/sessions/SESSION/recording?sha256=XYZ'],
    ['recording: unknown parameter', '/api/compliance/sessions/SESSION/recording?download=1'],
    ['blob: bad hash', '/api/compliance/sessions/SESSION/blobs/abc'],
    ['blob: upper-case hash', `/api/compliance/sessions/SESSION/blobs/${'A'.repeat(64)}`],
  ];

  it.each(bad)('%s', async (_name, path) => {
    const before = server.app.ledger.ledger.size;
    const res = await get(server, path.replace('SESSION', ids.aliceApproved!), bearer(carol));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('bad_request');
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(server.app.ledger.ledger.size).toBe(before);
  });

  it('media-cookie: unknown parameters are refused and no cookie is set', async () => {
    for (const method of ['POST', 'DELETE']) {
      const res = await fetch(`${server.url}/api/compliance/media-cookie?x=1`, { method, headers: bearer(carol) });
      expect(res.status).toBe(400);
      expect(res.headers.get('set-cookie')).toBeNull();
    }
  });
});

describe('roles: only compliance staff', () => {
  const routes = (id: string) => [
    `/api/compliance/sessions`,
    `/api/compliance/sessions/${id}`,
    `/api/compliance/sessions/${id}/bundle`,
    `/api/compliance/sessions/${id}/recording`,
    `/api/compliance/sessions/${id}/blobs/${'a'.repeat(64)}`,
  ];

  it('a teller and a supervisor are refused (403) everywhere, and so is the ledger entries API', async () => {
    for (const who of ['alice', 'sam'] as const) {
      const t = await token(server, who);
      for (const r of [...routes(ids.aliceApproved!), '/api/ledger/entries?start=0']) {
        const res = await get(server, r, bearer(t));
        expect(res.status, `${who} ${r}`).toBe(403);
        expect(await res.json()).toMatchObject({ error: { code: 'forbidden' } });
      }
      const cookie = await fetch(`${server.url}/api/compliance/media-cookie`, { method: 'POST', headers: bearer(t) });
      expect(cookie.status).toBe(403);
      expect(cookie.headers.get('set-cookie')).toBeNull();
    }
  });

  it('a customer token opens nothing here (401), its own call still works', async () => {
    const { customer, sessionId } = await callInProgress(clients, server, { username: 'alice', password: 'alice-demo-pass' });
    const { customerToken } = await createSession(server);
    for (const r of [...routes(sessionId), '/api/ledger/entries?start=0']) {
      const res = await get(server, r, bearer(customerToken));
      expect(res.status, r).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toMatch(/^(unauthorized|token_invalid)$/);
      // As a cookie too: the media routes take only a staff JWT there.
      expect((await get(server, r, { cookie: `vt_compliance_media=${customerToken}` })).status, r).toBe(401);
    }
    expect(customer.connected).toBe(true);
    clients.closeAll();
  });

  it('an API key cannot act as staff (401), in either header form', async () => {
    for (const r of [...routes(ids.aliceApproved!), '/api/ledger/entries?start=0']) {
      expect((await get(server, r, { 'x-api-key': server.apiKey })).status, r).toBe(401);
      expect((await get(server, r, { authorization: `ApiKey ${server.apiKey}` })).status, r).toBe(401);
      expect((await get(server, r, { authorization: `Bearer ${server.apiKey}` })).status, r).toBe(401);
    }
  });

  it('no credential, or a forged one, is 401', async () => {
    for (const r of routes(ids.aliceApproved!)) {
      expect((await get(server, r)).status, r).toBe(401);
      const [h, p] = carol.split('.');
      expect((await get(server, r, bearer(`${h}.${p}.AAAA`))).status, r).toBe(401);
    }
  });

  it('the media cookie carries the compliance sign-in to <video>, only on the media routes', async () => {
    const res = await fetch(`${server.url}/api/compliance/media-cookie`, { method: 'POST', headers: bearer(carol) });
    expect(res.status).toBe(204);
    const setCookie = res.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^vt_compliance_media=[^;]+; Path=\/api\/compliance\/sessions; HttpOnly; SameSite=Strict$/);
    const cookie = setCookie.split(';')[0]!;
    // The media routes accept it (404: no recording in this call, but past the sign-in check)…
    expect((await get(server, `/api/compliance/sessions/${ids.aliceApproved}/recording`, { cookie })).status).toBe(404);
    // …the others do not.
    for (const r of [`/api/compliance/sessions`, `/api/compliance/sessions/${ids.aliceApproved}`, `/api/compliance/sessions/${ids.aliceApproved}/bundle`]) {
      expect((await get(server, r, { cookie })).status, r).toBe(401);
    }
    const cleared = await fetch(`${server.url}/api/compliance/media-cookie`, { method: 'DELETE', headers: bearer(carol) });
    expect(cleared.status).toBe(204);
    expect(cleared.headers.get('set-cookie')).toMatch(/Max-Age=0/);
  });
});

// Last: this changes the ledger on disk.
describe('an entry damaged on disk (its frame CRC no longer matches)', () => {
  it('is served as unreadable, fails that entry only, in the API, the bundle and the page\'s check', async () => {
    const entries = await server.app.ledger.entriesOf(ids.aliceRejected!);
    const target = entries.find((e) => e.type === 'decision.made')!;
    const ledger = server.app.ledger.ledger as FileLedger;
    let changed = false;
    for (const seg of ledger.segmentFiles()) {
      const buf = readFileSync(seg);
      for (const f of scanFrames(buf, HEADER_BYTES, 1 << 20).frames) {
        if (!Buffer.from(f.payload).toString('utf8').includes(`"index":${target.index},`)) continue;
        buf[f.offset + FRAME_OVERHEAD + 5]! ^= 0x01;
        writeFileSync(seg, buf);
        changed = true;
      }
    }
    expect(changed).toBe(true);

    const res = await get(server, `/api/compliance/sessions/${ids.aliceRejected}`, bearer(carol));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { evidence: { entries: { index: number; bytes: string | null; unreadable?: string }[] } };
    const served = body.evidence.entries.find((e) => e.index === target.index)!;
    expect(served.bytes).toBeNull();
    expect(served.unreadable).toMatch(/no longer read back intact/);
    const report = await verifySessionEvidence(body.evidence);
    expect(report.entries.filter((e) => !e.ok).map((e) => e.index)).toEqual([target.index]);
    expect(report.entries.find((e) => e.index === target.index)!.problem!.kind).toBe('entry_unreadable');
    // The record's own entry is intact, and still verifies.
    expect(report.record).toMatchObject({ ok: true });

    const tar = new Uint8Array(await (await get(server, `/api/compliance/sessions/${ids.aliceRejected}/bundle`, bearer(carol))).arrayBuffer());
    const bundled = await verifyBundle(tar);
    expect(bundled.ok).toBe(false);
    expect(bundled.entries.filter((e) => !e.ok).map((e) => e.index)).toEqual([target.index]);
    // Other sessions are untouched.
    expect((await verifySessionEvidence(((await (await get(server, `/api/compliance/sessions/${ids.aliceApproved}`, bearer(carol))).json()) as { evidence: unknown }).evidence)).ok).toBe(true);
  });
});

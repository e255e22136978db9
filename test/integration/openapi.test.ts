/**
 * The OpenAPI document at /docs: generated from the routes' zod schemas, and checked against the
 * routes the real server registered, both ways (a route without an operation, or an operation
 * without a route, fails here).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

type Doc = { openapi: string; paths: Record<string, Record<string, { parameters?: { name: string; in: string; required: boolean }[]; requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>; required?: string[] } }> } }>> };

describe('GET /docs/openapi.json', () => {
  it('documents exactly the API routes the server registered', async () => {
    const res = await fetch(`${server.url}/docs/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Doc;
    expect(doc.openapi).toBe('3.1.0');
    const documented = Object.entries(doc.paths)
      .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{([^}]+)\}/g, ':$1')}`))
      .sort();
    // Static pages (the built client) and the root redirect are not API.
    const registered = server.app.routes
      .filter((r) => r.url.startsWith('/api/') || r.url.startsWith('/.well-known/') || r.url.startsWith('/docs') || ['/health', '/healthz', '/ready', '/readyz', '/metrics'].includes(r.url))
      .map((r) => `${r.method} ${r.url}`)
      .sort();
    expect(documented).toEqual([...new Set(registered)]);
  });

  it('takes its schemas from the validators: the session body, the amount, the query parameters', async () => {
    const doc = (await (await fetch(`${server.url}/docs/openapi.json`)).json()) as Doc;
    const create = doc.paths['/api/sessions']!.post!.requestBody!.content['application/json']!.schema;
    expect(Object.keys(create.properties!)).toEqual(expect.arrayContaining(['businessType', 'language', 'priority', 'customerRef', 'referencePhoto', 'amount']));
    expect(create.required).toEqual(expect.arrayContaining(['businessType', 'language', 'customerRef']));
    const list = doc.paths['/api/compliance/sessions']!.get!.parameters!;
    expect(list.map((p) => `${p.in}:${p.name}`)).toEqual(expect.arrayContaining(['query:from', 'query:teller', 'query:decision', 'query:businessType', 'query:limit']));
    expect(doc.paths['/api/sessions/{id}/record']!.get!.parameters).toEqual([expect.objectContaining({ name: 'id', in: 'path', required: true })]);
    const html = await (await fetch(`${server.url}/docs`)).text();
    expect(html).toContain('/api/authorizations');
  });
});

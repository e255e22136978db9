/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the same zod schemas the routes
 * validate with (z.toJSONSchema, input side), at GET /docs/openapi.json, with a plain HTML index at
 * GET /docs. The operation table below names each route's schemas; a test
 * (test/integration/openapi.test.ts) checks it against the routes Fastify actually registered,
 * both ways, so a route cannot be added or removed without the document following.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { loginBodySchema } from './auth.ts';
import { authorizationBodySchema } from './authorizations.ts';
import { blobParamsSchema, recordingQuerySchema, sessionListQuerySchema, sessionParamsSchema } from './compliance.ts';
import { checkpointQuerySchema, consistencyQuerySchema, entriesQuerySchema, inclusionQuerySchema } from './ledger.ts';
import { createSessionBodySchema, sessionIdParams } from './sessions.ts';

type Auth = 'none' | 'apiKey' | 'staff' | 'compliance' | 'metricsToken';

export interface Operation {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Fastify's path (`:id`); turned into OpenAPI's `{id}`. */
  path: string;
  summary: string;
  auth: Auth;
  params?: z.ZodObject;
  query?: z.ZodType;
  body?: z.ZodType;
  /** A raw (non-JSON) request body, by media type. */
  rawBody?: string[];
  responses: Record<string, string>;
}

const common = { '400': 'bad_request: the input, with the field named', '401': 'unauthorized' };

export const OPERATIONS: readonly Operation[] = [
  { method: 'GET', path: '/health', summary: 'Liveness: the process is up', auth: 'none', responses: { '200': 'up' } },
  { method: 'GET', path: '/healthz', summary: 'Liveness (alias)', auth: 'none', responses: { '200': 'up' } },
  { method: 'GET', path: '/ready', summary: 'Readiness: false while draining or a required backend is down', auth: 'none', responses: { '200': 'ready', '503': 'not ready, with the reasons' } },
  { method: 'GET', path: '/readyz', summary: 'Readiness (alias)', auth: 'none', responses: { '200': 'ready', '503': 'not ready' } },
  { method: 'POST', path: '/api/auth/login', summary: 'Staff sign-in: a JWT with role and scopes', auth: 'none', body: loginBodySchema, responses: { '200': '{ token, expiresAt, staff }', ...common } },
  {
    method: 'POST',
    path: '/api/sessions',
    summary: "The bank's system creates a customer session (optionally with the registered ID photo)",
    auth: 'apiKey',
    body: createSessionBodySchema,
    responses: { '201': '{ sessionId, customerToken, joinUrl, expiresAt, reference }', ...common, '413': 'too_large', '415': 'not a JPEG/PNG', '422': 'photo refused (error.reason)', '503': 'draining, or the face engine is busy (Retry-After)' },
  },
  { method: 'GET', path: '/api/sessions/:id', summary: 'A session of this API key: state, times, decision', auth: 'apiKey', params: sessionIdParams, responses: { '200': 'the session', ...common, '404': 'not_found' } },
  {
    method: 'GET',
    path: '/api/sessions/:id/record',
    summary: 'The verification record once the decision is final',
    auth: 'apiKey',
    params: sessionIdParams,
    responses: { '200': 'record bundle { format, version, jws, entry, index, inclusionProof, checkpoint }', ...common, '404': 'not_found', '409': 'not decided yet, or waiting for a co-signature' },
  },
  {
    method: 'PUT',
    path: '/api/sessions/:id/reference-photo',
    summary: 'Attach the registered ID photo (raw JPEG or PNG body)',
    auth: 'apiKey',
    params: sessionIdParams,
    rawBody: ['image/jpeg', 'image/png'],
    responses: { '200': '{ sessionId, reference }', ...common, '404': 'not_found', '409': 'invalid_state', '413': 'too_large', '415': 'unsupported type', '422': 'photo refused (error.reason)', '503': 'face engine busy' },
  },
  {
    method: 'POST',
    path: '/api/authorizations',
    summary: 'Authorize a transaction with a verification record (policy per transaction type)',
    auth: 'apiKey',
    body: authorizationBodySchema,
    responses: { '200': '{ authorized: true, authorization (JWS), ledgerIndex }', '403': '{ authorized: false, reasons[], ledgerIndex }', ...common },
  },
  { method: 'GET', path: '/.well-known/jwks.json', summary: 'Public keys of records, checkpoints and authorizations', auth: 'none', responses: { '200': 'JWKS' } },
  { method: 'GET', path: '/api/ledger/key', summary: 'The ledger keys (JWKS and signed-note verifier keys)', auth: 'none', responses: { '200': 'keys' } },
  { method: 'GET', path: '/api/ledger/checkpoint', summary: 'The newest signed checkpoint', auth: 'none', query: checkpointQuerySchema, responses: { '200': 'checkpoint (text or JSON)', '400': 'bad_request' } },
  { method: 'GET', path: '/api/ledger/entries', summary: 'Ledger entries [start, end) (compliance)', auth: 'compliance', query: entriesQuerySchema, responses: { '200': 'entries', ...common, '403': 'forbidden' } },
  { method: 'GET', path: '/api/ledger/proof/inclusion', summary: 'RFC 9162 inclusion proof', auth: 'none', query: inclusionQuerySchema, responses: { '200': 'proof', '400': 'bad_request' } },
  { method: 'GET', path: '/api/ledger/proof/consistency', summary: 'RFC 9162 consistency proof', auth: 'none', query: consistencyQuerySchema, responses: { '200': 'proof', '400': 'bad_request' } },
  { method: 'POST', path: '/api/compliance/media-cookie', summary: 'Put the staff token in an HttpOnly cookie for <video>', auth: 'compliance', responses: { '204': 'set', ...common, '403': 'forbidden' } },
  { method: 'DELETE', path: '/api/compliance/media-cookie', summary: 'Remove the media cookie', auth: 'compliance', responses: { '204': 'removed', ...common } },
  { method: 'GET', path: '/api/compliance/sessions', summary: 'Sessions from the ledger, filtered and paged', auth: 'compliance', query: sessionListQuerySchema, responses: { '200': '{ sessions, total }', ...common, '403': 'forbidden' } },
  { method: 'GET', path: '/api/compliance/sessions/:id', summary: "A session's evidence with proofs, keys, record and blobs", auth: 'compliance', params: sessionParamsSchema, responses: { '200': 'session evidence', ...common, '403': 'forbidden', '404': 'not_found' } },
  { method: 'GET', path: '/api/compliance/sessions/:id/bundle', summary: 'The evidence bundle (POSIX tar) for `videoteller verify-bundle`', auth: 'compliance', params: sessionParamsSchema, responses: { '200': 'application/x-tar', ...common, '403': 'forbidden', '404': 'not_found' } },
  {
    method: 'GET',
    path: '/api/compliance/sessions/:id/recording',
    summary: 'The recording with HTTP ranges (supervisors: only while a decision waits for their co-signature)',
    auth: 'compliance',
    params: sessionParamsSchema,
    query: recordingQuerySchema,
    responses: { '200': 'video/webm', '206': 'a range', ...common, '403': 'forbidden', '404': 'not_found', '409': 'blob_corrupt', '416': 'range not satisfiable' },
  },
  { method: 'GET', path: '/api/compliance/sessions/:id/blobs/:sha256', summary: 'A photo or recording the session names', auth: 'compliance', params: blobParamsSchema, responses: { '200': 'the blob', ...common, '403': 'forbidden', '404': 'not_found', '409': 'blob_corrupt' } },
  { method: 'GET', path: '/metrics', summary: 'Prometheus metrics (Bearer METRICS_TOKEN when set)', auth: 'metricsToken', responses: { '200': 'text exposition', '401': 'unauthorized' } },
  { method: 'GET', path: '/docs', summary: 'This document, as an HTML index', auth: 'none', responses: { '200': 'text/html' } },
  { method: 'GET', path: '/docs/openapi.json', summary: 'This document', auth: 'none', responses: { '200': 'OpenAPI 3.1' } },
];

const SECURITY: Record<Auth, Array<Record<string, string[]>>> = {
  none: [],
  apiKey: [{ apiKey: [] }],
  staff: [{ staffBearer: [] }],
  compliance: [{ staffBearer: [] }],
  metricsToken: [{ metricsBearer: [] }],
};

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const oaPath = op.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const parameters: unknown[] = [];
    if (op.params) {
      for (const [name, s] of Object.entries(op.params.shape)) parameters.push({ name, in: 'path', required: true, schema: jsonSchema(s as z.ZodType) });
    }
    if (op.query) {
      const q = jsonSchema(op.query) as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, s] of Object.entries(q.properties ?? {})) parameters.push({ name, in: 'query', required: q.required?.includes(name) ?? false, schema: s });
    }
    const requestBody = op.body
      ? { required: true, content: { 'application/json': { schema: jsonSchema(op.body) } } }
      : op.rawBody
        ? { required: true, content: Object.fromEntries(op.rawBody.map((t) => [t, { schema: { type: 'string', format: 'binary' } }])) }
        : undefined;
    (paths[oaPath] ??= {})[op.method.toLowerCase()] = {
      summary: op.summary,
      security: SECURITY[op.auth],
      ...(parameters.length ? { parameters } : {}),
      ...(requestBody ? { requestBody } : {}),
      responses: Object.fromEntries(
        Object.entries(op.responses).map(([code, description]) => [
          code,
          { description, ...(Number(code) >= 400 ? { content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } : {}) },
        ]),
      ),
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'videoteller HTTP API', version, description: 'Remote video-banking sessions, verification records and transaction authorization. Errors: { error: { code, message, reason? } }.' },
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
        staffBearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        metricsBearer: { type: 'http', scheme: 'bearer' },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, reason: { type: 'string' } } } },
        },
      },
    },
  };
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export async function openApiRoutes(app: FastifyInstance, opts: { version: string }): Promise<void> {
  const doc = openApiDocument(opts.version);
  app.get('/docs/openapi.json', async (_req, reply) => reply.header('cache-control', 'no-cache').send(doc));
  // No third-party viewer (nothing downloaded at run time): a plain index; any OpenAPI tool reads the JSON.
  const rows = OPERATIONS.map((op) => `<tr><td><code>${op.method}</code></td><td><code>${escapeHtml(op.path)}</code></td><td>${escapeHtml(op.summary)}</td><td>${op.auth}</td></tr>`).join('\n');
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>videoteller API</title>
<style>body{font:14px system-ui,sans-serif;margin:2rem}td,th{padding:.25rem .75rem;text-align:left;border-bottom:1px solid #ddd}</style></head>
<body><h1>videoteller HTTP API</h1><p>The OpenAPI 3.1 document: <a href="/docs/openapi.json">/docs/openapi.json</a> (generated from the zod schemas the server validates with).</p>
<table><thead><tr><th>method</th><th>path</th><th>what</th><th>auth</th></tr></thead><tbody>
${rows}
</tbody></table></body></html>`;
  app.get('/docs', async (_req, reply) => reply.type('text/html; charset=utf-8').send(html));
}

import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { businessTypeSchema, languageSchema } from '../../signaling/protocol.ts';
import type { QueueRouter } from '../../signaling/router.ts';
import type { ApiKeys } from '../auth/api-keys.ts';
import { newCustomerToken } from '../auth/customer-tokens.ts';
import type { EvidenceSink } from '../evidence.ts';
import type { ImageLimits } from '../identity/image.ts';
import type { IdentityService } from '../identity/service.ts';
import { maskId } from '../logger.ts';
import type { StateStore } from '../store/types.ts';
import { requireApiKey } from './auth.ts';
import { HttpError, parseInput } from './errors.ts';
import { amountStringSchema, currencySchema } from '../authorization/policy.ts';
import { assertJsonBesidesPhoto, base64PhotoSchema, intakeReferencePhoto, jsonWithPhotoBodyLimit, recordReferencePhoto } from './reference-photo.ts';

export const createSessionBodySchema = z
  .object({
    businessType: businessTypeSchema,
    language: languageSchema,
    priority: z.number().int().min(0).max(9).default(0),
    /** The bank's own reference for the customer (not an ID-document number). */
    customerRef: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'letters, digits and . _ : - only, at most 64'),
    /** The registered ID photo, base64 of a JPEG or PNG (or later: PUT /api/sessions/:id/reference-photo). */
    referencePhoto: base64PhotoSchema.optional(),
    /** The amount at stake, where the business has one: the policy's dual-control thresholds compare it. */
    amount: z.object({ value: amountStringSchema, currency: currencySchema }).strict().optional(),
  })
  .strict();

export const sessionIdParams = z.object({ id: z.string().uuid() });

export interface SessionRoutesOptions {
  /** While the node drains for shutdown it takes no new sessions (the bank's system retries elsewhere). */
  isDraining: () => boolean;
  store: StateStore;
  router: QueueRouter;
  evidence: EvidenceSink;
  apiKeys: ApiKeys;
  /** Base of join links (known only once the server listens when PORT=0). */
  publicUrl: () => string;
  customerTokenTtlS: number;
  /** Reference photos sent with the create (face engine, blob store) and their upload limits. */
  identity: IdentityService;
  imageLimits: ImageLimits;
}

/** The bank system's side of a session: create it (get the join link) and read its state. */
export async function sessionRoutes(app: FastifyInstance, opts: SessionRoutesOptions): Promise<void> {
  const { store, router, evidence } = opts;
  const expiryTimers = new Set<NodeJS.Timeout>();
  app.addHook('onClose', async () => expiryTimers.forEach(clearTimeout));

  const jsonLimit = app.initialConfig.bodyLimit ?? 1024 * 1024;
  const bodyLimit = jsonWithPhotoBodyLimit(jsonLimit, opts.imageLimits);
  app.post('/api/sessions', { onRequest: requireApiKey(opts.apiKeys), bodyLimit }, async (req, reply) => {
    assertJsonBesidesPhoto(req.body, jsonLimit);
    const { referencePhoto, ...body } = parseInput(createSessionBodySchema, req.body, 'body');
    if (opts.isDraining()) throw new HttpError(503, 'unavailable', 'this node is shutting down; retry on another node');
    // A refused photo refuses the whole create: nothing exists until the photo is accepted.
    const photo = referencePhoto === undefined ? undefined : await intakeReferencePhoto(opts.identity, Buffer.from(referencePhoto, 'base64'), opts.imageLimits, req.log, null);
    const id = randomUUID();
    const { token, hash } = newCustomerToken();
    const now = Date.now();
    const expiresAt = now + opts.customerTokenTtlS * 1000;
    await store.createSession({
      id,
      ...body,
      state: 'created',
      createdAt: now,
      tokenHash: hash,
      tokenExpiresAt: expiresAt,
      tokenUsed: false,
      declinedBy: {},
      createdBy: req.apiKeyId!,
      ...(photo ? { reference: photo.reference } : {}),
    });
    await evidence.append({
      sessionId: id,
      type: 'session.created',
      actor: `api:${req.apiKeyId}`,
      payload: {
        businessType: body.businessType,
        language: body.language,
        priority: body.priority,
        customerRef: body.customerRef,
        tokenExpiresAt: expiresAt,
        ...(body.amount ? { amount: body.amount } : {}),
      },
    });
    if (photo) await recordReferencePhoto(evidence, id, photo.photo, `api:${req.apiKeyId}`);
    const timer = setTimeout(() => {
      expiryTimers.delete(timer);
      router.expire(id).catch((err) => req.log.error({ err, sessionId: id }, 'session expiry failed'));
    }, opts.customerTokenTtlS * 1000);
    timer.unref();
    expiryTimers.add(timer);
    req.log.info({ sessionId: id, businessType: body.businessType, customerRef: maskId(body.customerRef), photoSha256: photo?.photo.sha256 ?? null }, 'session created');
    // The token travels in the fragment: browsers never send it to the server or in Referer.
    const joinUrl = `${opts.publicUrl()}/customer/#token=${token}`;
    return reply.code(201).send({ sessionId: id, customerToken: token, joinUrl, expiresAt, reference: photo?.summary ?? null });
  });

  app.get('/api/sessions/:id', { preHandler: requireApiKey(opts.apiKeys) }, async (req) => {
    const { id } = parseInput(sessionIdParams, req.params, 'session id');
    const s = await store.getSession(id);
    if (!s || s.createdBy !== req.apiKeyId) throw new HttpError(404, 'not_found', 'no such session');
    return {
      sessionId: s.id,
      state: s.state,
      businessType: s.businessType,
      language: s.language,
      priority: s.priority,
      customerRef: s.customerRef,
      createdAt: s.createdAt,
      answeredAt: s.answeredAt ?? null,
      endedAt: s.endedAt ?? null,
      endReason: s.endReason ?? null,
      tellerId: s.tellerId ?? null,
      reference: s.reference ? { sha256: s.reference.sha256, detectionScore: s.reference.detectionScore } : null,
      amount: s.amount ?? null,
      decision: s.decision
        ? {
            // Final once the record is issued (a supervisor may have refused the teller's approval).
            decision: s.decision.record ? (s.decision.cosign?.verdict === 'refuse' ? 'rejected' : s.decision.decision) : null,
            status: s.decision.status,
            tellerDecision: s.decision.decision,
            reason: s.decision.reason,
            decidedAt: s.decision.decidedAt,
            dualControl: s.decision.dualControl,
            supervisorId: s.decision.cosign?.supervisorId ?? null,
            recordId: s.decision.recordId ?? null,
          }
        : null,
    };
  });

  /**
   * The verification record of a decided session, as issued: the JWS, its ledger entry, the
   * inclusion proof and the signed checkpoint. `videoteller verify-record` checks this file offline.
   */
  app.get('/api/sessions/:id/record', { preHandler: requireApiKey(opts.apiKeys) }, async (req, reply) => {
    const { id } = parseInput(sessionIdParams, req.params, 'session id');
    const s = await store.getSession(id);
    if (!s || s.createdBy !== req.apiKeyId) throw new HttpError(404, 'not_found', 'no such session');
    if (!s.decision) throw new HttpError(409, 'invalid_state', `the session is ${s.state}, not decided: it has no record`);
    if (!s.decision.record) {
      const why = s.decision.status === 'awaiting_cosign' ? 'waits for a supervisor to co-sign' : 'is being finished (the recording is stored first)';
      throw new HttpError(409, 'invalid_state', `the decision ${why}: no record yet`);
    }
    return reply.header('cache-control', 'private, no-store').send(s.decision.record);
  });
}

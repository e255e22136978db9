/**
 * POST /api/authorizations: the bank's system asks whether a verification record authorizes a
 * transaction. 200 `{ authorized: true, authorization: JWS, ledgerIndex }` or 403
 * `{ authorized: false, reasons: [{ code, message }], ledgerIndex, error }` listing every failing
 * rule; both answers are in the ledger first. A bad body is 400, no API key 401.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiKeys } from '../auth/api-keys.ts';
import { Authorizer } from '../authorization/authorizer.ts';
import { amountStringSchema, currencySchema, loadPolicy, transactionTypeSchema, type LoadedPolicy } from '../authorization/policy.ts';
import { recordBundleSchema } from '../ledger/record-claims.ts';
import type { ServerLedger } from '../ledger/server-ledger.ts';
import { maskId } from '../logger.ts';
import { requireApiKey } from './auth.ts';
import { HttpError, parseInput } from './errors.ts';

export { loadPolicy };

export const authorizationBodySchema = z
  .object({
    transactionType: transactionTypeSchema,
    /** A decimal string such as "250000.00" (never a JSON number: money is not a float). */
    amount: amountStringSchema.optional(),
    currency: currencySchema.optional(),
    /** The bank's reference for the customer; must be the record's. */
    customerRef: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/, 'letters, digits and . _ : - only, at most 64'),
    /** The record bundle as GET /api/sessions/:id/record returns it. */
    record: recordBundleSchema,
  })
  .strict();

export interface AuthorizationRoutesOptions {
  apiKeys: ApiKeys;
  ledger: Pick<ServerLedger, 'ledger' | 'keyRing'>;
  policy: LoadedPolicy;
  /** Clock (tests). */
  now?: () => Date;
}

export async function authorizationRoutes(app: FastifyInstance, opts: AuthorizationRoutesOptions): Promise<void> {
  const authorizer = new Authorizer({ ledger: opts.ledger.ledger, keyRing: opts.ledger.keyRing, policy: opts.policy, ...(opts.now ? { now: opts.now } : {}) });
  const types = Object.keys(opts.policy.policy.transactionTypes);
  app.log.info({ file: opts.policy.file, sha256: opts.policy.sha256, transactionTypes: types }, 'transaction policy loaded');

  app.post('/api/authorizations', { onRequest: requireApiKey(opts.apiKeys) }, async (req, reply) => {
    const { record, ...request } = parseInput(authorizationBodySchema, req.body, 'body');
    if (!Object.hasOwn(opts.policy.policy.transactionTypes, request.transactionType)) {
      throw new HttpError(400, 'bad_request', `invalid body: transactionType: unknown transaction type ${request.transactionType} (the policy has ${types.join(', ')})`);
    }
    const answer = await authorizer.authorize(request, record, `api:${req.apiKeyId}`);
    if (answer.authorized) {
      const c = answer.claims;
      req.log.info(
        { sessionId: c.sessionId, recordJti: c.recordJti, authorizationJti: c.jti, transactionType: c.transactionType, customerRef: maskId(c.customerRef), ledgerIndex: answer.ledgerIndex },
        'transaction authorized',
      );
      return reply.header('cache-control', 'no-store').send({ authorized: true, authorization: answer.authorization, ledgerIndex: answer.ledgerIndex });
    }
    req.log.info(
      { sessionId: answer.sessionId, recordJti: answer.recordJti, transactionType: request.transactionType, reasons: answer.reasons.map((r) => r.code), ledgerIndex: answer.ledgerIndex },
      'transaction authorization denied',
    );
    return reply
      .code(403)
      .header('cache-control', 'no-store')
      .send({
        authorized: false,
        reasons: answer.reasons,
        ledgerIndex: answer.ledgerIndex,
        error: { code: 'forbidden', message: `not authorized: ${answer.reasons.map((r) => r.code).join(', ')}` },
      });
  });
}

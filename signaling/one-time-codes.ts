/**
 * The one-time code during a call, for business types whose policy asks for one
 * (config/policy.yaml `decisions.<type>.oneTimeCode`): the teller has the server issue a code,
 * the bank's system receives it in a signed `otp.requested` webhook and delivers it to the
 * customer's registered phone or e-mail, the customer types it on the call page. Only the
 * outcome reaches the teller and the evidence (src/otp/ keeps an HMAC, never the code).
 */
import { decisionRuleFor, type AuthorizationPolicy } from '../src/authorization/policy.ts';
import { OtpError, type OneTimeCodes } from '../src/otp/index.ts';
import type { StateStore } from '../src/store/types.ts';
import type { WebhookOutbox } from '../src/webhooks/index.ts';
import { SignalingError } from './handlers.ts';
import type { OtpResult } from './protocol.ts';

export interface OneTimeCodeDeps {
  codes: OneTimeCodes;
  webhooks: WebhookOutbox;
  store: StateStore;
  policy: AuthorizationPolicy;
  toCustomer(sessionId: string, expiresAt: number): void;
  toTeller(tellerId: string, result: OtpResult): void;
}

export class OneTimeCodeFlow {
  constructor(private readonly deps: OneTimeCodeDeps) {}

  /** The teller asks for a code to be sent: issue it and hand it to the bank's system. */
  async send(tellerId: string, sessionId: string): Promise<{ challengeId: string; expiresAt: number }> {
    const session = await this.deps.store.getSession(sessionId);
    if (!session) throw new SignalingError('not_found', 'no such session');
    if (!decisionRuleFor(this.deps.policy, session.businessType).oneTimeCode) {
      throw new SignalingError('invalid_state', `${session.businessType} does not use a one-time code`);
    }
    // Refused before a code exists: a code nobody can deliver would only burn one of the session's three.
    if (!this.deps.webhooks.canDeliver(session.createdBy)) {
      throw new SignalingError('unavailable', "the bank's system has no webhook configured to deliver the code");
    }
    let issued;
    try {
      issued = await this.deps.codes.issue(sessionId, tellerId);
    } catch (err) {
      if (err instanceof OtpError && err.code !== 'invalid_session') throw new SignalingError('rate_limited', err.message);
      throw err;
    }
    await this.deps.webhooks.enqueue(session.createdBy, {
      type: 'otp.requested',
      data: { sessionId, customerRef: session.customerRef, code: issued.code, expiresAt: issued.expiresAt },
    });
    this.deps.toCustomer(sessionId, issued.expiresAt);
    return { challengeId: issued.challengeId, expiresAt: issued.expiresAt };
  }

  /** The customer typed the code. */
  async submit(sessionId: string, tellerId: string, code: string): Promise<OtpResult> {
    const outcome = await this.deps.codes.verify(sessionId, code);
    if (outcome.result === 'invalid_input') throw new SignalingError('bad_request', 'code: six digits');
    const result: OtpResult = { result: outcome.result, attemptsLeft: outcome.attemptsLeft };
    this.deps.toTeller(tellerId, result);
    return result;
  }

  /** The outcome the decision and the record carry; undefined when no code was issued. */
  status(sessionId: string) {
    return this.deps.codes.status(sessionId);
  }
}

/**
 * Signed webhooks to the bank's systems, with retries (issue 5).
 *
 * Wiring (one line in app.ts):
 *   const webhooks = await openWebhookOutbox(config, evidence, log.child({ part: 'webhooks' }));
 *   …
 *   await webhooks.enqueue(session.createdBy, { type: 'session.decided', data: { sessionId, customerRef, decision, reason, record } });
 *   await webhooks.enqueue(session.createdBy, { type: 'otp.requested', data: { sessionId, customerRef, code, expiresAt } });
 *   …
 *   await webhooks.close();   // on shutdown; undelivered events stay on disk and resume at the next start
 *
 * The client id is the API key id that created the session (`session.createdBy`). For receivers
 * (and tests): verifyWebhookSignature(secret, header, rawBody, { toleranceS }).
 */
import type { Config } from '../config.ts';
import type { EvidenceSink } from '../evidence.ts';
import type { Logger } from '../logger.ts';
import { WebhookOutbox, type WebhookOutboxOptions } from './outbox.ts';

export { isLoopbackHost, webhookConfigIssues, webhookConfigSchema, webhookUrlProblem, type WebhookConfig, type WebhookEndpoint } from './config.ts';
export {
  buildEvent,
  REDACTED_FIELDS,
  WEBHOOK_EVENT_TYPES,
  WebhookEventError,
  type OtpRequestedData,
  type SessionDecidedData,
  type WebhookEventBody,
  type WebhookEventInput,
  type WebhookEventType,
} from './events.ts';
export { backoffDelay, parseRetryAfter, pendingDeliverySchema, WEBHOOK_EVIDENCE, WebhookOutbox, type DeadReason, type EnqueueResult, type PendingDelivery, type WebhookOutboxOptions } from './outbox.ts';
export { DEFAULT_TOLERANCE_S, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signWebhook, verifyWebhookSignature, type SignatureCheck, type SignatureError } from './signature.ts';

type WebhookSettings = Pick<Config, 'DATA_DIR' | 'WEBHOOKS' | 'WEBHOOK_MAX_ATTEMPTS' | 'WEBHOOK_RETRY_BASE_MS' | 'WEBHOOK_RETRY_MAX_MS' | 'WEBHOOK_TIMEOUT_MS' | 'WEBHOOK_CONCURRENCY'>;

export function webhookOptionsFromConfig(config: WebhookSettings): WebhookOutboxOptions {
  return {
    dataDir: config.DATA_DIR,
    endpoints: config.WEBHOOKS ?? [],
    maxAttempts: config.WEBHOOK_MAX_ATTEMPTS,
    retryBaseMs: config.WEBHOOK_RETRY_BASE_MS,
    retryMaxMs: config.WEBHOOK_RETRY_MAX_MS,
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    concurrency: config.WEBHOOK_CONCURRENCY,
  };
}

/** Opens the outbox from the server config and resumes pending deliveries. */
export function openWebhookOutbox(config: WebhookSettings, evidence: EvidenceSink, log: Logger): Promise<WebhookOutbox> {
  return WebhookOutbox.open(webhookOptionsFromConfig(config), evidence, log);
}

/**
 * Webhook events: what the bank's system receives, as JSON `{ id, type, createdAt, data }`.
 *
 * - `session.decided`: data `{ sessionId, customerRef, decision, reason, record }`, `record`
 *   being the verification record bundle (the same one GET /api/sessions/:id/record returns).
 * - `otp.requested`: data `{ sessionId, customerRef, code, expiresAt }`: the bank delivers the
 *   code to the customer's registered phone or e-mail. This body is the ONLY place a one-time
 *   code leaves the server; it is never logged, never put in evidence, and stripped from a
 *   dead-lettered copy (REDACTED_FIELDS). `expiresAt` is ISO 8601 in the body; the input takes
 *   epoch milliseconds (what OneTimeCodes.issue returns). The outbox stops trying to deliver it
 *   once it has expired (a late code is useless).
 *
 * Every input is parsed here with zod before anything is written, so a malformed event fails
 * at enqueue() in the caller, not at the receiver.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { recordBundleSchema } from '../ledger/record-claims.ts';

export const WEBHOOK_EVENT_TYPES = ['session.decided', 'otp.requested'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

const id = z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/, 'expected printable ASCII without spaces');

export const sessionDecidedDataSchema = z
  .object({
    sessionId: id,
    customerRef: id,
    decision: z.enum(['approved', 'rejected']),
    reason: z.string().min(1).max(64),
    record: recordBundleSchema,
  })
  .strict();

export const otpRequestedDataSchema = z
  .object({
    sessionId: id,
    customerRef: id,
    code: z.string().regex(/^\d{6}$/, 'expected 6 digits'),
    /** Epoch milliseconds. */
    expiresAt: z.number().int().positive(),
  })
  .strict();

export const webhookEventInputSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('session.decided'), data: sessionDecidedDataSchema }).strict(),
  z.object({ type: z.literal('otp.requested'), data: otpRequestedDataSchema }).strict(),
]);
export type WebhookEventInput = z.input<typeof webhookEventInputSchema>;
export type SessionDecidedData = z.input<typeof sessionDecidedDataSchema>;
export type OtpRequestedData = z.input<typeof otpRequestedDataSchema>;

/** The JSON body as sent. */
export interface WebhookEventBody {
  id: string;
  type: WebhookEventType;
  createdAt: string;
  data: Record<string, unknown>;
}

/** Data fields replaced by "[redacted]" when a delivery is dead-lettered to disk. */
export const REDACTED_FIELDS: Record<WebhookEventType, readonly string[]> = {
  'session.decided': [],
  'otp.requested': ['code'],
};

export class WebhookEventError extends Error {
  readonly code = 'invalid_event';
  constructor(message: string) {
    super(message);
    this.name = 'WebhookEventError';
  }
}

export interface BuiltEvent {
  body: WebhookEventBody;
  /** The exact bytes that are signed and sent. */
  rawBody: string;
  sessionId: string;
  /** Epoch ms after which delivering is pointless, or null. */
  deliverBy: number | null;
}

/** Validates an event and builds its body. Throws WebhookEventError naming the bad field (never its value). */
export function buildEvent(input: WebhookEventInput, now: number): BuiltEvent {
  const parsed = webhookEventInputSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WebhookEventError(`${issue.path.join('.') || 'event'}: ${issue.message}`);
  }
  const ev = parsed.data;
  const createdAt = new Date(now).toISOString();
  let data: Record<string, unknown>;
  let deliverBy: number | null = null;
  if (ev.type === 'otp.requested') {
    data = { ...ev.data, expiresAt: new Date(ev.data.expiresAt).toISOString() };
    deliverBy = ev.data.expiresAt;
  } else {
    data = { ...ev.data };
  }
  const body: WebhookEventBody = { id: randomUUID(), type: ev.type, createdAt, data };
  return { body, rawBody: JSON.stringify(body), sessionId: ev.data.sessionId, deliverBy };
}

/** The body with the event type's sensitive data fields replaced, for a dead-letter copy. */
export function redactBody(type: WebhookEventType, rawBody: string): string {
  const fields = REDACTED_FIELDS[type];
  if (fields.length === 0) return rawBody;
  const body = JSON.parse(rawBody) as WebhookEventBody;
  for (const f of fields) if (f in body.data) body.data[f] = '[redacted]';
  return JSON.stringify(body);
}

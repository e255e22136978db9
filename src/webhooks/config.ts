/**
 * Webhook settings from the environment, spread into src/config.ts's schema.
 *
 * WEBHOOKS follows API_KEYS' shape (one env variable, comma-separated entries), keyed by the
 * same client id as the bank's API key:
 *
 *   WEBHOOKS="bank-a=https://bank-a.example/videoteller|<secret ≥ 32 chars>,bank-b=…"
 *
 * - The URL must be https; plain http is accepted only for loopback hosts (localhost,
 *   127.0.0.0/8, ::1), for tests and development.
 * - The secret is the HMAC-SHA256 signing key shared with that bank (≥ 32 characters, no
 *   whitespace). The secret is everything after the LAST '|', so it cannot contain '|'; neither
 *   URL nor secret can contain ','.
 * - Error messages name the entry and the client id, never the URL or the secret.
 * Unset: no webhooks; deliveries are skipped with a log line (the API still serves results).
 */
import { z } from 'zod';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export interface WebhookEndpoint {
  clientId: string;
  url: string;
  secret: string;
}

export const WEBHOOK_SECRET_MIN_LENGTH = 32;
const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True for hosts that never leave the machine: plain http is allowed only for these. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  if (h === 'localhost' || h === '[::1]' || h === '::1') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Why a webhook URL is refused, or undefined if it is acceptable. Never echoes the URL. */
export function webhookUrlProblem(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'the URL does not parse';
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') return isLoopbackHost(url.hostname) ? undefined : 'the URL must be https (plain http only for loopback hosts)';
  return 'the URL must be https';
}

function parseEndpoints(spec: string, ctx: z.RefinementCtx): WebhookEndpoint[] {
  const out: WebhookEndpoint[] = [];
  const entries = spec
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0) ctx.addIssue({ code: 'custom', message: 'no entry given (expected "client-id=https://…|secret,…")' });
  entries.forEach((entry, i) => {
    const where = `entry ${i + 1}`;
    const eq = entry.indexOf('=');
    const bar = entry.lastIndexOf('|');
    if (eq < 1 || bar < eq + 2) {
      ctx.addIssue({ code: 'custom', message: `${where}: expected "client-id=https://…|secret"` });
      return;
    }
    const clientId = entry.slice(0, eq).trim();
    const url = entry.slice(eq + 1, bar).trim();
    const secret = entry.slice(bar + 1);
    if (!CLIENT_ID.test(clientId)) {
      ctx.addIssue({ code: 'custom', message: `${where}: the client id must be 1–64 letters, digits, '.', '_' or '-'` });
      return;
    }
    const problems: string[] = [];
    const urlProblem = webhookUrlProblem(url);
    if (urlProblem) problems.push(urlProblem);
    if (secret.length < WEBHOOK_SECRET_MIN_LENGTH) problems.push(`the secret is shorter than ${WEBHOOK_SECRET_MIN_LENGTH} characters`);
    else if (/\s/.test(secret)) problems.push('the secret contains whitespace');
    if (out.some((e) => e.clientId === clientId)) problems.push('the client id appears twice');
    for (const p of problems) ctx.addIssue({ code: 'custom', message: `client "${clientId}": ${p}` });
    if (problems.length === 0) out.push({ clientId, url, secret });
  });
  return out;
}

export const webhookConfigSchema = z.object({
  /** Per bank client: "client-id=https://…|secret,…" (see the top of this file). Unset: no webhooks. */
  WEBHOOKS: z
    .string()
    .transform((v, ctx) => parseEndpoints(v, ctx))
    .optional(),
  /** Attempts per delivery (the first one included) before it goes to dead/. */
  WEBHOOK_MAX_ATTEMPTS: int(1, 100).default(12),
  /** Backoff: base, doubling per attempt, capped at max (also the cap on a receiver's Retry-After). */
  WEBHOOK_RETRY_BASE_MS: int(10, 3_600_000).default(1000),
  WEBHOOK_RETRY_MAX_MS: int(10, 86_400_000).default(600_000),
  /** Per-attempt timeout (connect, send, response headers). */
  WEBHOOK_TIMEOUT_MS: int(100, 120_000).default(10_000),
  /** Deliveries in flight at once. */
  WEBHOOK_CONCURRENCY: int(1, 64).default(4),
});

export type WebhookConfig = z.infer<typeof webhookConfigSchema>;

/**
 * Cross-checks for loadConfig: the retry bounds are ordered, and when API_KEYS is set every
 * webhook's client id is one of its key ids (a typo would otherwise silently skip deliveries).
 */
export function webhookConfigIssues(c: WebhookConfig, apiKeysSpec: string | undefined): string[] {
  const issues: string[] = [];
  if (c.WEBHOOK_RETRY_BASE_MS > c.WEBHOOK_RETRY_MAX_MS) issues.push('WEBHOOK_RETRY_BASE_MS: must not exceed WEBHOOK_RETRY_MAX_MS');
  if (apiKeysSpec && c.WEBHOOKS) {
    const keyIds = new Set(
      apiKeysSpec
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)
        .map((p) => p.slice(0, Math.max(0, p.indexOf(':')))),
    );
    for (const e of c.WEBHOOKS) {
      if (!keyIds.has(e.clientId)) issues.push(`WEBHOOKS: client "${e.clientId}" has no API key in API_KEYS`);
    }
  }
  return issues;
}

/**
 * The transaction policy (POLICY_FILE, default config/policy.yaml): per transaction type, which
 * sessions' records may authorize it, which evidence they must carry, how old they may be, the
 * amount rules and when dual control applies. Loaded and validated once at start; a bad file
 * stops the start with a ConfigError naming the file and the field.
 *
 * Approver scopes are the tellers' approval scopes (src/auth/staff-directory.ts); a record names
 * its teller's (`tellerScope`). Supervisors have no scope in the record yet: under dual control
 * decide.ts requires a named supervisor other than the teller.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { businessTypeSchema } from '../../signaling/protocol.ts';
import { approvalScopeSchema } from '../auth/staff-directory.ts';
import { ConfigError } from '../config.ts';

export const DEFAULT_POLICY_FILE = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../config/policy.yaml');

/** Decimal places an amount may have; amounts are compared as integers of 10^-4 units. */
export const AMOUNT_DECIMALS = 4;
const AMOUNT_RE = /^(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?$/;

/** A positive decimal amount as a string ("250000", "99.95"), up to 15 integer digits and 4 places. */
export const amountStringSchema = z
  .string()
  .regex(AMOUNT_RE, 'a decimal amount as a string, such as "1500.00" (at most 15 digits before the point and 4 after)')
  // zod runs refinements after a failed regex too: test the pattern again before parsing.
  .refine((s) => !AMOUNT_RE.test(s) || parseAmount(s) > 0n, 'must be more than zero');

/** An amount in 10^-4 units. Assumes the string matches amountStringSchema. */
export function parseAmount(s: string): bigint {
  const [whole, frac = ''] = s.split('.');
  return BigInt(whole!) * 10n ** BigInt(AMOUNT_DECIMALS) + BigInt(frac.padEnd(AMOUNT_DECIMALS, '0'));
}

export const currencySchema = z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 currency code such as "EUR"');
export const transactionTypeSchema = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'lower-case letters, digits and _, starting with a letter');

/** A threshold in the file: a number or a decimal string, turned into the canonical string. */
const thresholdSchema = z
  .union([z.number(), z.string()])
  .transform((v) => (typeof v === 'number' ? String(v) : v))
  .pipe(amountStringSchema);

const dualControlSchema = z.union([
  z.literal('never'),
  z.literal('always'),
  z.object({ above: z.record(currencySchema, thresholdSchema) }).strict(),
]);

export const transactionPolicySchema = z
  .object({
    description: z.string().max(500).optional(),
    /** The record's businessType must be one of these. */
    businessTypes: z.array(businessTypeSchema).min(1),
    requires: z
      .object({
        faceMatch: z.boolean(),
        liveness: z.boolean(),
        document: z.boolean(),
        recording: z.boolean(),
        /** The customer typed the one-time code the bank delivered (possession of the registered phone or e-mail). */
        oneTimeCode: z.boolean().default(false),
      })
      .strict(),
    /** Seconds since the record was issued (iat); the record's own exp applies as well. */
    maxRecordAgeS: z.number().int().positive().max(10 * 365 * 86_400),
    /** Absent: the transaction has no amount (one sent is refused). */
    amount: z
      .object({ required: z.boolean(), currencies: z.array(currencySchema).min(1) })
      .strict()
      .optional(),
    dualControl: dualControlSchema.default('never'),
    /** The approving teller's scope (the record's tellerScope) must be one of these. */
    approverScopes: z.array(approvalScopeSchema).min(1),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (typeof p.dualControl !== 'object') return;
    if (!p.amount) {
      ctx.addIssue({ code: 'custom', path: ['dualControl', 'above'], message: 'thresholds need amount rules (the transaction has no amount)' });
      return;
    }
    for (const c of p.amount.currencies) {
      if (p.dualControl.above[c] === undefined) ctx.addIssue({ code: 'custom', path: ['dualControl', 'above', c], message: `no threshold for ${c}, an accepted currency` });
    }
    for (const c of Object.keys(p.dualControl.above)) {
      if (!p.amount.currencies.includes(c)) ctx.addIssue({ code: 'custom', path: ['dualControl', 'above', c], message: `${c} is not in amount.currencies` });
    }
  });
export type TransactionPolicy = z.infer<typeof transactionPolicySchema>;

/**
 * What the call's decision needs, per business type of the session (the teller decides before
 * any transaction is presented): a supervisor's co-signature (dual control; `above` compares the
 * amount the bank's system declared when it created the session) and a one-time code.
 */
export const decisionRuleSchema = z
  .object({
    dualControl: dualControlSchema.default('never'),
    oneTimeCode: z.boolean().default(false),
  })
  .strict();
export type DecisionRule = z.infer<typeof decisionRuleSchema>;

export const policySchema = z
  .object({
    version: z.literal(1),
    decisions: z.partialRecord(businessTypeSchema, decisionRuleSchema).default({}),
    transactionTypes: z
      .record(transactionTypeSchema, transactionPolicySchema)
      .refine((t) => Object.keys(t).length > 0, 'at least one transaction type'),
  })
  .strict();
export type AuthorizationPolicy = z.infer<typeof policySchema>;

export interface LoadedPolicy {
  policy: AuthorizationPolicy;
  file: string;
  /** SHA-256 of the file as read: logged with every answer, so an audit knows which policy decided. */
  sha256: string;
}

const NO_RULE: DecisionRule = { dualControl: 'never', oneTimeCode: false };

/** The decision rule of a business type (none in the file: no co-signature, no code). */
export function decisionRuleFor(policy: AuthorizationPolicy, businessType: string): DecisionRule {
  return (Object.hasOwn(policy.decisions, businessType) ? policy.decisions[businessType as keyof typeof policy.decisions] : undefined) ?? NO_RULE;
}

/**
 * Whether a teller's approval needs a supervisor: always, never, or when the session's declared
 * amount is above the threshold of its currency. A declared amount in a currency the rule has no
 * threshold for needs one (fail closed).
 */
export function needsDualControl(rule: DecisionRule, amount: { value: string; currency: string } | undefined): boolean {
  if (rule.dualControl === 'always') return true;
  if (rule.dualControl === 'never' || !amount) return false;
  const threshold = rule.dualControl.above[amount.currency];
  return threshold === undefined || parseAmount(amount.value) > parseAmount(threshold);
}

/** Validates a policy already parsed from YAML/JSON; throws ConfigError naming `source` and the field. */
export function parsePolicy(data: unknown, source: string): AuthorizationPolicy {
  const parsed = policySchema.safeParse(data);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `POLICY_FILE ${source}: ${i.path.join('.') || '(top)'}: ${i.message}`));
  }
  return parsed.data;
}

/** Reads and validates the policy file (YAML or JSON). Unset: the shipped config/policy.yaml. */
export function loadPolicy(file: string = DEFAULT_POLICY_FILE): LoadedPolicy {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`POLICY_FILE ${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (err) {
    throw new ConfigError([`POLICY_FILE ${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`]);
  }
  return { policy: parsePolicy(data, file), file, sha256: createHash('sha256').update(text).digest('hex') };
}

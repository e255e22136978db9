import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { identityConfigSchema, toMatchConfig } from './identity/config.ts';
import { validateMatchConfig } from './identity/scoring.ts';
import { otpConfigSchema } from './otp/config.ts';
import { webhookConfigIssues, webhookConfigSchema } from './webhooks/config.ts';

/**
 * All configuration comes from the environment, parsed once at start.
 * Every default works on one machine with no external service (no Redis, no PostgreSQL).
 */

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const configSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: int(0, 65535).default(8080),
  /** Base URL customers' join links point at; defaults to the address the server listens on. */
  PUBLIC_URL: z.string().url().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Where keys, the ledger and blobs (recordings, photos) live. */
  DATA_DIR: z.string().min(1).default('./data'),
  /**
   * Recordings, photos and record bundles, by SHA-256 (default DATA_DIR/blobs). Several nodes point
   * it at one shared file system: a call is recorded on the node holding its media, and replayed or
   * co-signed from any node.
   */
  BLOB_DIR: z.string().min(1).optional(),

  /** Staff directory (YAML or JSON). Unset: the demo directory shipped in config/. */
  STAFF_FILE: z.string().min(1).optional(),
  /** Bank systems' API keys: "id:secret,id2:secret2". Unset: one demo key, with a warning. */
  API_KEYS: z.string().min(1).optional(),
  /** Secret for staff JWTs (HS256). Unset: generated once into DATA_DIR (one node only). */
  JWT_SECRET: z.string().min(32).optional(),
  STAFF_TOKEN_TTL_S: int(60, 86_400).default(8 * 3600),
  CUSTOMER_TOKEN_TTL_S: int(30, 7 * 86_400).default(1800),

  /**
   * Shared state (sessions, queue, tellers) in Redis, for several nodes: redis://[:password@]host:port[/db]
   * (rediss:// for TLS). Unset: in memory, one node. Redis must keep its data across restarts
   * (src/store/README.md: appendonly yes, maxmemory-policy noeviction).
   */
  REDIS_URL: z
    .string()
    .url()
    .refine((u) => /^rediss?:\/\//.test(u), 'must be a redis:// or rediss:// URL')
    .optional(),
  /** Prefix of every key this deployment writes, so several deployments can share one Redis. */
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/).default('videoteller:'),
  /**
   * This node's name among several (logs, and which node holds a call's media). Unset: a fresh
   * name at every start (host, pid, random), so a restarted node never claims its past calls.
   */
  NODE_ID: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, '1 to 64 letters, digits, dots, dashes or underscores').optional(),
  /** Several nodes: how often a node renews its heartbeat; after 3 missed, another node takes over what it left. */
  CLUSTER_HEARTBEAT_MS: int(100, 60_000).default(2000),

  /** Routing. */
  ROUTING_MODE: z.enum(['longest_idle', 'random']).default('longest_idle'),
  OFFER_TIMEOUT_MS: int(1000, 600_000).default(20_000),
  MAX_MISSED_OFFERS: int(1, 100).default(3),
  WRAP_UP_MS: int(0, 3_600_000).default(15_000),
  /** Every this many seconds of waiting raises a session's effective priority by one, so low priority never starves. */
  PRIORITY_AGEING_S: int(1, 86_400).default(60),
  /** Grace period for a dropped customer or teller before the call fails. */
  RECONNECT_GRACE_MS: int(0, 600_000).default(30_000),
  SHUTDOWN_DRAIN_MS: int(0, 3_600_000).default(30_000),

  /** Operations (src/operations/). Service level = answered within this many seconds of queueing / (answered + abandoned after it). */
  SERVICE_LEVEL_TARGET_S: int(1, 3600).default(20),
  /** Set: GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`. Unset: /metrics is open (keep it on the monitoring network). */
  METRICS_TOKEN: z.string().regex(/^\S{16,256}$/, '16 to 256 characters without spaces').optional(),

  /** Media (mediasoup). */
  MEDIA_WORKERS: int(1, 64).default(os.cpus().length),
  RTC_LISTEN_IP: z.string().min(1).default('127.0.0.1'),
  /** Address announced to browsers in ICE candidates (public IP or DNS name behind NAT). */
  RTC_ANNOUNCED_ADDRESS: z.string().min(1).optional(),
  RTC_MIN_PORT: int(1024, 65535).default(40000),
  RTC_MAX_PORT: int(1024, 65535).default(49999),
  MEDIASOUP_LOG_LEVEL: z.enum(['debug', 'warn', 'error', 'none']).default('warn'),

  /** Ledger. */
  LEDGER_ORIGIN: z.string().min(1).default('videoteller.local/ledger'),
  CHECKPOINT_INTERVAL_MS: int(10, 3_600_000).default(1000),
  RECORD_TTL_S: int(60, 10 * 365 * 86_400).default(30 * 86_400),
  /**
   * PostgreSQL (postgres://user[:password]@host:port/db). Set: the ledger lives there, so several
   * nodes can share it (src/ledger/postgres/); unset: the embedded file ledger in DATA_DIR.
   */
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgres:// or postgresql:// URL' }).optional(),
  /** Schema of the ledger's tables in DATABASE_URL's database. */
  LEDGER_PG_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lower-case letters, digits and _, at most 63').default('videoteller'),
  /** The ledger's signing keys (default DATA_DIR/keys). Nodes sharing a PostgreSQL ledger share this directory. */
  LEDGER_KEYS_DIR: z.string().min(1).optional(),
  /** Transaction authorization policy (YAML or JSON, src/authorization/policy.ts). Unset: config/policy.yaml. */
  POLICY_FILE: z.string().min(1).optional(),

  /** Identity checks during the call (src/identity/config.ts documents each). */
  ...identityConfigSchema.shape,
  /** Frames per second the server analyses from the customer's video; more while a liveness challenge is open. */
  IDENTITY_FRAME_RATE: z.coerce.number().min(0.5).max(15).default(2),
  IDENTITY_CHALLENGE_FRAME_RATE: z.coerce.number().min(0.5).max(15).default(8),
  /** Liveness challenges per check, and the time the customer has for each. */
  LIVENESS_CHALLENGES: int(2, 4).default(3),
  LIVENESS_CHALLENGE_TIMEOUT_MS: int(2000, 60_000).default(8000),
  /**
   * Issue exactly these challenges in this order (comma-separated) instead of a random pick.
   * For tests and demonstrations only: predictable challenges can be pre-recorded.
   */
  LIVENESS_CHALLENGE_TYPES: z
    .string()
    .transform((v) => v.split(',').map((x) => x.trim()))
    .pipe(z.array(z.enum(['turn_left', 'turn_right', 'blink', 'move_closer'])).min(1).max(4))
    .optional(),

  /** Signed webhooks to the bank's systems, per API key id (src/webhooks/config.ts documents each). */
  ...webhookConfigSchema.shape,
  /** One-time codes during the call (src/otp/config.ts). */
  ...otpConfigSchema.shape,
});

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Parse the environment; throws ConfigError listing every bad variable (never the values, which may be secrets). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.fromEntries(
    Object.keys(configSchema.shape)
      .filter((k) => env[k] !== undefined && env[k] !== '')
      .map((k) => [k, env[k]]),
  );
  const parsed = configSchema.safeParse(known);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const c = parsed.data;
  if (c.RTC_MIN_PORT > c.RTC_MAX_PORT) throw new ConfigError(['RTC_MIN_PORT: must not exceed RTC_MAX_PORT']);
  if (c.REDIS_URL && !c.OTP_SECRET) throw new ConfigError(['OTP_SECRET: required when REDIS_URL is set (every node must hash one-time codes with the same key)']);
  const webhookIssues = webhookConfigIssues(c, c.API_KEYS);
  if (webhookIssues.length) throw new ConfigError(webhookIssues);
  try {
    validateMatchConfig(toMatchConfig(c));
  } catch (err) {
    throw new ConfigError([`IDENTITY_MATCH_*: ${(err as Error).message}`]);
  }
  return {
    ...c,
    ...(c.PUBLIC_URL ? { PUBLIC_URL: c.PUBLIC_URL.replace(/\/$/, '') } : {}),
    DATA_DIR: path.resolve(c.DATA_DIR),
    ...(c.LEDGER_KEYS_DIR ? { LEDGER_KEYS_DIR: path.resolve(c.LEDGER_KEYS_DIR) } : {}),
    ...(c.BLOB_DIR ? { BLOB_DIR: path.resolve(c.BLOB_DIR) } : {}),
  };
}

import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.ts';
import { webhookOptionsFromConfig } from '../../../src/webhooks/index.ts';
import { otpOptionsFromConfig } from '../../../src/otp/index.ts';

const SECRET_A = 'a-secret-of-at-least-32-characters-1';
const SECRET_B = 'b-secret-of-at-least-32-characters-2';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`accepted: ${JSON.stringify(env)}`);
}

describe('webhook and one-time-code settings', () => {
  it('default to no webhooks, the documented retry schedule and 5-minute codes', () => {
    const c = loadConfig({});
    expect(c.WEBHOOKS).toBeUndefined();
    expect(webhookOptionsFromConfig(c)).toMatchObject({ endpoints: [], maxAttempts: 12, retryBaseMs: 1000, retryMaxMs: 600_000, timeoutMs: 10_000, concurrency: 4, dataDir: c.DATA_DIR });
    expect(otpOptionsFromConfig(c)).toEqual({ ttlMs: 300_000 });
  });

  it('parse "client=url|secret" entries: https anywhere, plain http only on loopback', () => {
    const c = loadConfig({
      WEBHOOKS: ` bank-a=https://bank-a.example/hooks/vt?x=1|${SECRET_A}, bank-b=http://127.0.0.1:9000/hook|${SECRET_B},dev=http://localhost/h|${SECRET_A},v6=http://[::1]:8/h|${SECRET_B}`,
      API_KEYS: 'bank-a:aaaaaaaaaaaaaaaa1,bank-b:bbbbbbbbbbbbbbbb2,dev:dddddddddddddddd3,v6:vvvvvvvvvvvvvvvv4',
      WEBHOOK_MAX_ATTEMPTS: '3',
      OTP_TTL_S: '120',
      OTP_SECRET: SECRET_B,
    });
    expect(c.WEBHOOKS).toEqual([
      { clientId: 'bank-a', url: 'https://bank-a.example/hooks/vt?x=1', secret: SECRET_A },
      { clientId: 'bank-b', url: 'http://127.0.0.1:9000/hook', secret: SECRET_B },
      { clientId: 'dev', url: 'http://localhost/h', secret: SECRET_A },
      { clientId: 'v6', url: 'http://[::1]:8/h', secret: SECRET_B },
    ]);
    expect(c.WEBHOOK_MAX_ATTEMPTS).toBe(3);
    expect(otpOptionsFromConfig(c)).toEqual({ ttlMs: 120_000, secret: SECRET_B });
  });

  it('refuse bad entries with the client named, never echoing the URL or the secret', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ WEBHOOKS: `bank-a=http://bank-a.example/hook|${SECRET_A}` }, /^WEBHOOKS: client "bank-a": the URL must be https \(plain http only for loopback hosts\)$/],
      [{ WEBHOOKS: `bank-a=ftp://bank-a.example/hook|${SECRET_A}` }, /^WEBHOOKS: client "bank-a": the URL must be https$/],
      [{ WEBHOOKS: `bank-a=not a url|${SECRET_A}` }, /^WEBHOOKS: client "bank-a": the URL does not parse$/],
      [{ WEBHOOKS: 'bank-a=https://bank-a.example/hook|too-short-secret' }, /^WEBHOOKS: client "bank-a": the secret is shorter than 32 characters$/],
      [{ WEBHOOKS: `bank-a=https://bank-a.example/hook|${SECRET_A} x` }, /^WEBHOOKS: client "bank-a": the secret contains whitespace$/],
      [{ WEBHOOKS: `bank-a=https://a.example/h|${SECRET_A},bank-a=https://b.example/h|${SECRET_B}` }, /^WEBHOOKS: client "bank-a": the client id appears twice$/],
      [{ WEBHOOKS: `https://bank-a.example/hook|${SECRET_A}` }, /^WEBHOOKS: entry 1: expected "client-id=https:\/\/…\|secret"$/],
      [{ WEBHOOKS: `bank-a=https://bank-a.example/hook` }, /^WEBHOOKS: entry 1: expected/],
      [{ WEBHOOKS: `bank a=https://bank-a.example/hook|${SECRET_A}` }, /^WEBHOOKS: entry 1: the client id must be/],
      [{ WEBHOOKS: ',' }, /^WEBHOOKS: no entry given/],
      [{ WEBHOOKS: `bank-z=https://z.example/h|${SECRET_A}`, API_KEYS: 'bank-a:aaaaaaaaaaaaaaaa1' }, /^WEBHOOKS: client "bank-z" has no API key in API_KEYS$/],
      [{ WEBHOOK_RETRY_BASE_MS: '5000', WEBHOOK_RETRY_MAX_MS: '1000' }, /^WEBHOOK_RETRY_BASE_MS: must not exceed WEBHOOK_RETRY_MAX_MS$/],
      [{ WEBHOOK_MAX_ATTEMPTS: '0' }, /^WEBHOOK_MAX_ATTEMPTS: /],
      [{ WEBHOOK_TIMEOUT_MS: 'soon' }, /^WEBHOOK_TIMEOUT_MS: /],
      [{ WEBHOOK_CONCURRENCY: '1000' }, /^WEBHOOK_CONCURRENCY: /],
      [{ OTP_TTL_S: '5' }, /^OTP_TTL_S: /],
      [{ OTP_SECRET: 'short-otp-secret' }, /^OTP_SECRET: /],
    ];
    for (const [env, expected] of cases) {
      const err = configError(env);
      expect(err.issues, JSON.stringify(env)).toHaveLength(1);
      expect(err.issues[0], JSON.stringify(env)).toMatch(expected);
      for (const secret of [SECRET_A, SECRET_B, 'too-short-secret', 'short-otp-secret']) expect(err.message).not.toContain(secret);
      expect(err.message).not.toContain('example/h');
    }
  });

  it('require OTP_SECRET with REDIS_URL: nodes sharing the codes in Redis must hash them with one key', () => {
    const err = configError({ REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(err.issues).toEqual(['OTP_SECRET: required when REDIS_URL is set (every node must hash one-time codes with the same key)']);
    const c = loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', OTP_SECRET: SECRET_A });
    expect(otpOptionsFromConfig(c)).toEqual({ ttlMs: 300_000, secret: SECRET_A });
    // One node, no Redis: a random key per process is fine.
    expect(loadConfig({}).OTP_SECRET).toBeUndefined();
  });

  it('name every bad entry of a list at once', () => {
    const err = configError({ WEBHOOKS: `a=http://a.example/h|${SECRET_A},b=https://b.example/h|short,c=https://c.example/h|${SECRET_B}` });
    expect(err.issues).toEqual([
      'WEBHOOKS: client "a": the URL must be https (plain http only for loopback hosts)',
      'WEBHOOKS: client "b": the secret is shorter than 32 characters',
    ]);
  });
});

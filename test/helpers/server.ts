import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildApp, type VideoTellerApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/logger.ts';

export const TEST_API_KEY = 'test-bank-api-key-0123456789';

export interface TestServer {
  url: string;
  apiKey: string;
  tellerLogin: { username: string; password: string };
  app: VideoTellerApp;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * The real server, in this process, on a free loopback port with its own data directory.
 * Only timings are shortened; everything else is what `npm start` runs.
 */
export async function startTestServer(env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'videoteller-test-'));
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    API_KEYS: `test-bank:${TEST_API_KEY}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    // Debugging a media problem: TEST_LOG_LEVEL=debug MEDIASOUP_LOG_LEVEL=debug npx vitest run …
    MEDIASOUP_LOG_LEVEL: process.env.MEDIASOUP_LOG_LEVEL ?? 'warn',
    MEDIA_WORKERS: '1',
    WRAP_UP_MS: '0',
    RECONNECT_GRACE_MS: '2000',
    RTC_LISTEN_IP: '127.0.0.1',
    // Several nodes (REDIS_URL) share the one-time codes' state, so they need one HMAC key, as in production.
    ...(env.REDIS_URL ? { OTP_SECRET: 'test-otp-secret-shared-by-nodes-0123456789' } : {}),
    ...env,
  });
  const log = createLogger(config.LOG_LEVEL);
  const app = await buildApp(config, log);
  const url = await app.listen();
  return {
    url,
    apiKey: TEST_API_KEY,
    tellerLogin: { username: 'alice', password: 'alice-demo-pass' },
    app,
    dataDir,
    async close() {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Creates a session through the bank system's API. */
export async function createSession(
  server: Pick<TestServer, 'url' | 'apiKey'>,
  body: Record<string, unknown> = { businessType: 'corporate_account_opening', language: 'en', priority: 0, customerRef: 'CUST-0001' },
): Promise<{ sessionId: string; customerToken: string; joinUrl: string; expiresAt: number }> {
  const res = await fetch(`${server.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': server.apiKey },
    body: JSON.stringify(body),
  });
  if (res.status !== 201) throw new Error(`POST /api/sessions: ${res.status} ${await res.text()}`);
  return (await res.json()) as { sessionId: string; customerToken: string; joinUrl: string; expiresAt: number };
}

export async function loginStaff(url: string, username: string, password: string): Promise<string> {
  const res = await fetch(`${url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

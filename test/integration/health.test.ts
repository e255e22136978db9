import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresCheck, redisCheck } from '../../src/http/health.ts';
import { callInProgress } from '../helpers/call.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { next, request, SocketClients } from '../helpers/socket.ts';
import { dropSchema, freshSchema, TEST_DATABASE_URL } from './ledger/postgres-helpers.ts';
import { silentLog } from './store/redis-helpers.ts';
import { RedisProcess, redisTestPort } from './store/redis-process.ts';

/**
 * /health says the process answers; /ready says this node should get new work. The server here
 * uses its own redis-server (stopped and restarted by the test) and a fresh schema in the test
 * PostgreSQL, so readiness checks both; draining is a real shutdown with a call in progress.
 */

let redis: RedisProcess;
let server: TestServer;
const schema = freshSchema('vt_health');
const clients = new SocketClients(() => server.url);

beforeAll(async () => {
  redis = new RedisProcess(redisTestPort());
  await redis.start();
  server = await startTestServer({
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: `health-${process.pid}:`,
    DATABASE_URL: TEST_DATABASE_URL,
    LEDGER_PG_SCHEMA: schema,
  });
}, 60_000);
afterAll(async () => {
  clients.closeAll();
  await server?.close().catch(() => undefined);
  await redis?.dispose();
  await dropSchema(schema);
});

const get = async (path: string) => {
  const res = await fetch(`${server.url}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

/** Polls /ready until it answers `status` (the probe's Redis connection reconnects in the background). */
async function readyBecomes(status: number, attempts = 50): Promise<{ status: number; body: Record<string, unknown> }> {
  let last = await get('/ready');
  for (let i = 0; i < attempts && last.status !== status; i++) {
    await new Promise((r) => setTimeout(r, 200));
    last = await get('/ready');
  }
  return last;
}

describe('health and readiness', () => {
  it('is live and ready with Redis, PostgreSQL and the media workers up', async () => {
    expect(await get('/health')).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await get('/healthz')).toEqual({ status: 200, body: { status: 'ok' } });
    expect(await get('/ready')).toEqual({
      status: 200,
      body: { status: 'ready', checks: { redis: { status: 'ok' }, postgres: { status: 'ok' }, media: { status: 'ok' } } },
    });
  });

  it('is not ready while Redis is down, naming redis, and ready again once it is back; live throughout', async () => {
    await redis.stop();
    const down = await readyBecomes(503);
    expect(down.status).toBe(503);
    expect(down.body).toMatchObject({ status: 'not_ready', failing: ['redis'], checks: { redis: { status: 'failed' }, postgres: { status: 'ok' }, media: { status: 'ok' } } });
    expect((await get('/readyz')).status).toBe(503);
    expect(await get('/health')).toEqual({ status: 200, body: { status: 'ok' } });

    await redis.start();
    const up = await readyBecomes(200);
    expect(up).toMatchObject({ status: 200, body: { status: 'ready' } });
  }, 30_000);

  it('is not ready while draining for shutdown, and still live', async () => {
    const { teller, customer } = await callInProgress(clients, server);
    // The call keeps the drain going (up to 20 s) until the teller hangs up.
    const shutdown = server.app.shutdown(20_000);
    expect(await get('/ready')).toEqual({ status: 503, body: { status: 'draining', failing: ['draining'] } });
    expect(await get('/health')).toEqual({ status: 200, body: { status: 'ok' } });
    // Hanging up ends the drain (the ack may not arrive: the drain ends as soon as the call is
    // gone). The pages then leave, as they do when their call ends.
    const ended = next(customer, 'call:ended');
    void request(teller, 'call:hangup', {});
    expect(await ended).toMatchObject({ reason: 'teller_hangup' });
    clients.closeAll();
    await shutdown;
    expect(server.app.signaling.calls.size).toBe(0);
  }, 30_000);
});

describe('readiness probes against a backend that is not there', () => {
  it('PostgreSQL refusing connections fails the check', async () => {
    const check = postgresCheck('postgres://postgres@127.0.0.1:1/test', silentLog);
    await expect(check.check()).rejects.toThrow(/ECONNREFUSED|connect/);
    await check.close?.();
  });

  it('Redis refusing connections fails the check', async () => {
    const check = redisCheck(`redis://127.0.0.1:${redisTestPort()}`);
    await expect(check.check()).rejects.toThrow();
    await check.close?.();
  });
});

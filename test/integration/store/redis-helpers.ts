import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '../../../src/logger.ts';
import { RedisStore, type RedisStoreOptions } from '../../../src/store/redis.ts';

/** The shared Redis the machines run (others use it too: tests only touch their own prefix). */
export const SHARED_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export const silentLog = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

/** A unique key prefix per test run, and a way to delete every key under it. */
export function testPrefix(): string {
  return `vt-test:${randomUUID()}:`;
}

export function openTestStore(prefix: string, extra: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  return RedisStore.open({ url: SHARED_REDIS_URL, keyPrefix: prefix, log: silentLog, ...extra });
}

/** Deletes the keys under prefix (SCAN, never FLUSHALL: other engineers' tests share this Redis). */
export async function deletePrefix(prefix: string, url = SHARED_REDIS_URL): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== '0');
    return deleted;
  } finally {
    redis.disconnect();
  }
}

import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { StateStore } from './types.ts';

/**
 * The state store the configuration asks for: Redis when REDIS_URL is set (several nodes share
 * it), memory otherwise (one node). Nothing outside src/store/ knows which one it got.
 * Rejects with StoreUnavailableError when Redis cannot be reached, so a start fails fast.
 */
export async function openStore(config: Pick<Config, 'REDIS_URL' | 'REDIS_KEY_PREFIX'>, log: Logger): Promise<StateStore> {
  if (!config.REDIS_URL) {
    log.info('state store: memory (one node; set REDIS_URL to share state between nodes)');
    return new MemoryStore();
  }
  return RedisStore.open({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX, log });
}

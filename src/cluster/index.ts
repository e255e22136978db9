import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { LocalCluster } from './local.ts';
import { RedisCluster } from './redis.ts';
import type { Cluster, NodeInfo } from './types.ts';

export type { Cluster, NodeInfo } from './types.ts';

type ClusterConfig = Pick<Config, 'REDIS_URL' | 'REDIS_KEY_PREFIX' | 'NODE_ID' | 'CLUSTER_HEARTBEAT_MS' | 'RTC_LISTEN_IP' | 'RTC_ANNOUNCED_ADDRESS'>;

/**
 * This node's place in the deployment: alone (no REDIS_URL), or one of several sharing Redis.
 * The node id names the node in the store (which node holds a call's media) and in logs; it is
 * fresh at every start unless NODE_ID says otherwise, so a restarted node never claims calls
 * its previous life held.
 */
export async function openCluster(config: ClusterConfig, log: Logger): Promise<Cluster> {
  const self: NodeInfo = {
    id: config.NODE_ID ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    mediaAddress: config.RTC_ANNOUNCED_ADDRESS ?? config.RTC_LISTEN_IP,
    pid: process.pid,
    startedAt: Date.now(),
  };
  if (!config.REDIS_URL) return new LocalCluster(self);
  return RedisCluster.open({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX, self, log, heartbeatMs: config.CLUSTER_HEARTBEAT_MS });
}

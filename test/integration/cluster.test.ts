/**
 * The cluster (src/cluster/): requests between nodes over the real Redis, typed refusals carried
 * back, garbage dropped, a node that is gone failing fast, heartbeats running out, and exactly one
 * live node taking over what a lost node left. One node alone: LocalCluster.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../src/cluster/local.ts';
import { RedisCluster } from '../../src/cluster/redis.ts';
import { NodeUnreachableError, RemoteError, type NodeInfo } from '../../src/cluster/types.ts';
import { createLogger } from '../../src/logger.ts';
import { deletePrefix, SHARED_REDIS_URL, testPrefix } from './store/redis-helpers.ts';

const log = createLogger('silent');
const prefix = testPrefix();
const opened: RedisCluster[] = [];
const info = (id: string): NodeInfo => ({ id, mediaAddress: '127.0.0.1', pid: process.pid, startedAt: Date.now() });

async function node(id: string, heartbeatMs = 100): Promise<RedisCluster> {
  const c = await RedisCluster.open({ url: SHARED_REDIS_URL, keyPrefix: prefix, self: info(id), log, heartbeatMs });
  opened.push(c);
  return c;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await deletePrefix(prefix);
});

describe('RedisCluster', () => {
  it('runs a request on the named node and brings its answer back; a typed refusal keeps its code', async () => {
    const a = await node('req-a');
    const b = await node('req-b');
    b.serve('echo', async (p) => ({ servedBy: 'req-b', got: p }));
    b.serve('refuse', async () => {
      throw Object.assign(new Error('no call in progress'), { code: 'invalid_state' });
    });
    b.serve('crash', async () => {
      throw new Error('secret internal detail');
    });
    expect(await a.request('req-b', 'echo', { n: 1 })).toEqual({ servedBy: 'req-b', got: { n: 1 } });
    await expect(a.request('req-b', 'refuse', {})).rejects.toMatchObject({ name: 'RemoteError', code: 'invalid_state', message: 'no call in progress' });
    // An untyped failure is internal, and its message stays on the node it happened on.
    const crash = await a.request('req-b', 'crash', {}).catch((e: unknown) => e);
    expect(crash).toBeInstanceOf(RemoteError);
    expect(crash).toMatchObject({ code: 'internal' });
    expect((crash as Error).message).not.toContain('secret');
    await expect(a.request('req-b', 'no-such-channel', {})).rejects.toMatchObject({ code: 'internal' });
    // A request to itself runs in process.
    a.serve('echo', async (p) => ({ servedBy: 'req-a', got: p }));
    expect(await a.request('req-a', 'echo', 2)).toEqual({ servedBy: 'req-a', got: 2 });
  });

  it('fails at once for a node nobody serves, and at the timeout for one that does not answer', async () => {
    const a = await node('gone-a');
    await expect(a.request('never-existed', 'echo', {})).rejects.toBeInstanceOf(NodeUnreachableError);
    // A subscriber that never answers (a node stuck in a long pause, as far as the caller can tell).
    const silent = new Redis(SHARED_REDIS_URL);
    try {
      await silent.subscribe(`${prefix}cluster:rpc:stuck`);
      await expect(a.request('stuck', 'echo', {}, 300)).rejects.toMatchObject({ name: 'NodeUnreachableError', message: expect.stringContaining('within 300 ms') });
    } finally {
      silent.disconnect();
    }
  });

  it('drops malformed messages and answers the next good request', async () => {
    const a = await node('junk-a');
    const b = await node('junk-b');
    b.serve('echo', async (p) => p);
    const raw = new Redis(SHARED_REDIS_URL);
    try {
      for (const junk of ['not json', '{"kind":"request"}', JSON.stringify({ kind: 'response', id: 'x', ok: 'yes' }), '[]']) {
        await raw.publish(`${prefix}cluster:rpc:junk-b`, junk);
        await raw.publish(`${prefix}cluster:rpc:junk-a`, junk);
      }
    } finally {
      raw.disconnect();
    }
    expect(await a.request('junk-b', 'echo', 'still here')).toBe('still here');
  });

  it('lists live nodes with their media address; a closed node leaves and exactly one live node takes over what it left', async () => {
    const lost: Array<{ by: string; node: string }> = [];
    const a = await node('live-a');
    const b = await node('live-b');
    const c = await node('live-c');
    for (const n of [a, b]) n.onNodeLost(async (id) => void lost.push({ by: n.self.id, node: id }));
    expect((await a.liveNodes()).map((n) => [n.id, n.mediaAddress]).sort()).toEqual([
      ['live-a', '127.0.0.1'],
      ['live-b', '127.0.0.1'],
      ['live-c', '127.0.0.1'],
    ]);
    await c.close();
    // (Nodes the earlier tests closed are taken over too: they share this prefix.)
    const ofC = () => lost.filter((l) => l.node === 'live-c');
    await expect.poll(() => ofC().length, { timeout: 5000 }).toBe(1);
    expect(await a.isLive('live-c')).toBe(false);
    // Several more heartbeats: nobody takes it over twice.
    await new Promise((r) => setTimeout(r, 500));
    expect(ofC()).toHaveLength(1);
    expect((await b.liveNodes()).map((n) => n.id).sort()).toEqual(['live-a', 'live-b']);
  });

  it('takes over a node whose heartbeat ran out (no goodbye), and retries a takeover that failed', async () => {
    const a = await node('hb-a');
    let attempts = 0;
    a.onNodeLost(async (id) => {
      if (id !== 'hb-dead') return;
      attempts++;
      throw new Error('store away');
    });
    // A node that joined and died without a word: its key expires by itself.
    const raw = new Redis(SHARED_REDIS_URL);
    try {
      await raw.multi().set(`${prefix}cluster:node:hb-dead`, JSON.stringify(info('hb-dead')), 'PX', 200).sadd(`${prefix}cluster:nodes`, 'hb-dead').exec();
      await expect.poll(() => attempts, { timeout: 5000 }).toBe(1);
      // The failed takeover leaves the node listed; its claim expires and it is taken over again.
      expect(await raw.sismember(`${prefix}cluster:nodes`, 'hb-dead')).toBe(1);
      await raw.del(`${prefix}cluster:takeover:hb-dead`);
      await expect.poll(() => attempts, { timeout: 5000 }).toBe(2);
    } finally {
      raw.disconnect();
    }
  });

  it('takes over what its own earlier process left when it starts again under the same NODE_ID', async () => {
    const raw = new Redis(SHARED_REDIS_URL);
    try {
      // The earlier process: listed, heartbeat gone (it died).
      await raw.sadd(`${prefix}cluster:nodes`, 'pod-0');
      const again = await node('pod-0');
      const taken: string[] = [];
      // (Nodes the earlier tests closed are taken over too: they share this prefix.)
      again.onNodeLost(async (id) => void (id === 'pod-0' && taken.push(id)));
      await expect.poll(() => taken, { timeout: 5000 }).toEqual(['pod-0']);
      await new Promise((r) => setTimeout(r, 400));
      expect(taken).toEqual(['pod-0']);
      expect(await again.isLive('pod-0')).toBe(true);
    } finally {
      raw.disconnect();
    }
  });

  it('refuses a node entry that is not a NodeInfo when listing', async () => {
    const a = await node('list-a');
    const raw = new Redis(SHARED_REDIS_URL);
    try {
      await raw.multi().set(`${prefix}cluster:node:list-bad`, '{"id":42}', 'PX', 5000).sadd(`${prefix}cluster:nodes`, 'list-bad').exec();
      expect((await a.liveNodes()).map((n) => n.id)).not.toContain('list-bad');
    } finally {
      await raw.del(`${prefix}cluster:node:list-bad`);
      await raw.srem(`${prefix}cluster:nodes`, 'list-bad');
      raw.disconnect();
    }
  });
});

describe('LocalCluster (one node)', () => {
  it('serves requests to itself and refuses any other node', async () => {
    const c = new LocalCluster(info('solo'));
    c.serve('echo', async (p) => p);
    expect(await c.request('solo', 'echo', 7)).toBe(7);
    await expect(c.request('other', 'echo', 7)).rejects.toBeInstanceOf(NodeUnreachableError);
    expect(await c.liveNodes()).toEqual([c.self]);
    expect(await c.isLive('other')).toBe(false);
  });
});

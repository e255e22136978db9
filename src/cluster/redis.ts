import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { z } from 'zod';
import type { Logger } from '../logger.ts';
import {
  DEFAULT_REQUEST_TIMEOUT_MS,
  NodeUnreachableError,
  RemoteError,
  nodeInfoSchema,
  type Cluster,
  type NodeInfo,
  type RequestHandler,
} from './types.ts';

export interface RedisClusterOptions {
  url: string;
  keyPrefix: string;
  self: NodeInfo;
  log: Logger;
  /** How often this node renews its heartbeat and looks for lost nodes. */
  heartbeatMs: number;
}

/**
 * Several nodes sharing one Redis. Keys (under the deployment's prefix):
 * - `cluster:node:<id>`: the node's NodeInfo, expiring 3 heartbeats after the last renewal;
 * - `cluster:nodes`: every node that joined and has not been taken over yet;
 * - `cluster:takeover:<id>`: held by the one node taking over a lost node.
 * Requests go to channel `cluster:rpc:<id>`; answers come back on the caller's own channel.
 * Every message read from Redis is parsed before use: another deployment's or a broken node's
 * garbage is logged and dropped.
 */
export class RedisCluster implements Cluster {
  readonly shared = true;
  private readonly handlers = new Map<string, RequestHandler>();
  private readonly pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly lostHandlers: Array<(nodeId: string) => Promise<void>> = [];
  private readonly ttlMs: number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private beating: Promise<void> | undefined;
  /**
   * This node's id was listed with no heartbeat when it joined: an earlier process with the same
   * NODE_ID died (a restarted pod keeps its name). What that process left is taken over here, once.
   */
  private previousLife = false;

  private constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    readonly self: NodeInfo,
    private readonly opts: RedisClusterOptions,
  ) {
    this.ttlMs = opts.heartbeatMs * 3;
  }

  static async open(opts: RedisClusterOptions): Promise<RedisCluster> {
    const pub = new Redis(opts.url, { maxRetriesPerRequest: 2, lazyConnect: true });
    const sub = pub.duplicate();
    for (const [name, client] of [['pub', pub], ['sub', sub]] as const) {
      client.on('error', (err: Error) => opts.log.warn({ err: { message: err.message }, client: name }, 'cluster: Redis connection error'));
    }
    await Promise.all([pub.connect(), sub.connect()]);
    const cluster = new RedisCluster(pub, sub, opts.self, opts);
    sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => cluster.onMessage(message));
    await sub.subscribe(cluster.channel(opts.self.id));
    const selfKey = cluster.key(`cluster:node:${opts.self.id}`);
    cluster.previousLife = (await pub.exists(selfKey)) === 0 && (await pub.sismember(cluster.key('cluster:nodes'), opts.self.id)) === 1;
    await cluster.heartbeat();
    cluster.timer = setInterval(() => void cluster.tick(), opts.heartbeatMs);
    cluster.timer.unref();
    opts.log.info({ node: opts.self.id, mediaAddress: opts.self.mediaAddress }, 'cluster: joined');
    return cluster;
  }

  async request(nodeId: string, channel: string, payload: unknown, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<unknown> {
    if (nodeId === this.self.id) return this.runLocal(channel, payload);
    if (this.closed) throw new NodeUnreachableError(nodeId, 'this node is shutting down');
    const id = randomUUID();
    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NodeUnreachableError(nodeId, `node ${nodeId} did not answer ${channel} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
    const message: RequestMessage = { kind: 'request', id, from: this.self.id, channel, payload };
    const receivers = await this.pub.publish(this.channel(nodeId), JSON.stringify(message)).catch((err: Error) => {
      this.settle(id, undefined, new NodeUnreachableError(nodeId, `cannot reach Redis: ${err.message}`));
      return -1;
    });
    // Nobody subscribed: the node is gone (its heartbeat may not have run out yet). Fail now, not at the timeout.
    if (receivers === 0) this.settle(id, undefined, new NodeUnreachableError(nodeId, `node ${nodeId} is not connected`));
    return answer;
  }

  serve(channel: string, handler: RequestHandler): void {
    this.handlers.set(channel, handler);
  }

  async liveNodes(): Promise<NodeInfo[]> {
    const ids = await this.pub.smembers(this.key('cluster:nodes'));
    if (ids.length === 0) return [];
    const values = await this.pub.mget(ids.map((id) => this.key(`cluster:node:${id}`)));
    const nodes: NodeInfo[] = [];
    for (const v of values) {
      const parsed = v === null ? undefined : parseJson(nodeInfoSchema, v);
      if (parsed) nodes.push(parsed);
    }
    return nodes;
  }

  async isLive(nodeId: string): Promise<boolean> {
    if (nodeId === this.self.id) return !this.closed;
    return (await this.pub.exists(this.key(`cluster:node:${nodeId}`))) === 1;
  }

  onNodeLost(handler: (nodeId: string) => Promise<void>): void {
    this.lostHandlers.push(handler);
  }

  /**
   * Leaves: the heartbeat key goes at once, so another node takes over what this one leaves
   * (waiting customers' and tellers' grace periods) at its next heartbeat instead of 3 later.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.beating?.catch(() => undefined);
    for (const [id] of this.pending) this.settle(id, undefined, new NodeUnreachableError(this.self.id, 'this node is shutting down'));
    await this.pub.del(this.key(`cluster:node:${this.self.id}`)).catch(() => undefined);
    await Promise.allSettled([this.sub.quit(), this.pub.quit()]);
  }

  // ---------------------------------------------------------------------------------------------

  private async tick(): Promise<void> {
    if (this.closed || this.beating) return;
    this.beating = (async () => {
      await this.heartbeat();
      await this.takeOverLostNodes();
    })()
      .catch((err: Error) => this.opts.log.warn({ err: { message: err.message } }, 'cluster: heartbeat failed'))
      .finally(() => {
        this.beating = undefined;
      });
  }

  private async heartbeat(): Promise<void> {
    await this.pub
      .multi()
      .set(this.key(`cluster:node:${this.self.id}`), JSON.stringify(this.self), 'PX', this.ttlMs)
      .sadd(this.key('cluster:nodes'), this.self.id)
      .exec();
  }

  private async takeOverLostNodes(): Promise<void> {
    if (this.previousLife && (await this.runLostHandlers(this.self.id))) this.previousLife = false;
    const ids = await this.pub.smembers(this.key('cluster:nodes'));
    for (const id of ids) {
      if (id === this.self.id || this.closed) continue;
      if (await this.isLive(id)) continue;
      // One node takes over; the claim expires so a node that dies while taking over is retried.
      const claimed = await this.pub.set(this.key(`cluster:takeover:${id}`), this.self.id, 'PX', 60_000, 'NX');
      if (claimed !== 'OK') continue;
      // Retried by whichever node claims it next (after the claim expires) when something failed.
      if (await this.runLostHandlers(id)) await this.pub.srem(this.key('cluster:nodes'), id);
    }
  }

  /** True when every handler succeeded. */
  private async runLostHandlers(id: string): Promise<boolean> {
    this.opts.log.warn({ lostNode: id }, id === this.self.id ? 'cluster: taking over what this node left before its restart' : 'cluster: node lost, taking over what it left');
    let ok = true;
    for (const handler of this.lostHandlers) {
      await handler(id).catch((err: Error) => {
        ok = false;
        this.opts.log.error({ err, lostNode: id }, 'cluster: taking over a lost node failed');
      });
    }
    return ok;
  }

  private onMessage(raw: Buffer): void {
    const parsed = parseJson(messageSchema, raw.toString('utf8'));
    if (!parsed) {
      this.opts.log.warn({ bytes: raw.length }, 'cluster: dropped a malformed message');
      return;
    }
    if (parsed.kind === 'response') {
      this.settle(parsed.id, parsed.ok ? parsed.result : undefined, parsed.ok ? undefined : new RemoteError(parsed.code, parsed.message));
      return;
    }
    void this.answer(parsed);
  }

  private async answer(req: RequestMessage): Promise<void> {
    let response: ResponseMessage;
    try {
      response = { kind: 'response', id: req.id, ok: true, result: (await this.runLocal(req.channel, req.payload)) ?? null };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && code !== 'internal') {
        response = { kind: 'response', id: req.id, ok: false, code, message: (err as Error).message };
      } else {
        this.opts.log.error({ err, channel: req.channel, from: req.from }, 'cluster: request failed');
        response = { kind: 'response', id: req.id, ok: false, code: 'internal', message: 'internal error on the node that serves the request' };
      }
    }
    await this.pub.publish(this.channel(req.from), JSON.stringify(response)).catch((err: Error) => {
      this.opts.log.warn({ err: { message: err.message }, channel: req.channel }, 'cluster: answer could not be sent');
    });
  }

  private async runLocal(channel: string, payload: unknown): Promise<unknown> {
    const handler = this.handlers.get(channel);
    if (!handler) throw new RemoteError('internal', `no handler for ${channel}`);
    return handler(payload);
  }

  private settle(id: string, value: unknown, error: Error | undefined): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(value);
  }

  private channel(nodeId: string): string {
    return this.key(`cluster:rpc:${nodeId}`);
  }

  private key(k: string): string {
    return this.opts.keyPrefix + k;
  }
}

const requestSchema = z.object({
  kind: z.literal('request'),
  id: z.string().min(1).max(64),
  from: z.string().min(1).max(128),
  channel: z.string().min(1).max(64),
  payload: z.unknown(),
});
const responseSchema = z.discriminatedUnion('ok', [
  z.object({ kind: z.literal('response'), id: z.string().min(1).max(64), ok: z.literal(true), result: z.unknown() }),
  z.object({ kind: z.literal('response'), id: z.string().min(1).max(64), ok: z.literal(false), code: z.string().min(1).max(64), message: z.string().max(2000) }),
]);
const messageSchema = z.union([requestSchema, responseSchema]);
type RequestMessage = z.infer<typeof requestSchema>;
type ResponseMessage = z.infer<typeof responseSchema>;

function parseJson<T>(schema: z.ZodType<T>, text: string): T | undefined {
  try {
    const r = schema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

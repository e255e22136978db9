import { NodeUnreachableError, RemoteError, type Cluster, type NodeInfo, type RequestHandler } from './types.ts';

/** One node and no other: requests are to this node, served in process. */
export class LocalCluster implements Cluster {
  readonly shared = false;
  private readonly handlers = new Map<string, RequestHandler>();

  constructor(readonly self: NodeInfo) {}

  async request(nodeId: string, channel: string, payload: unknown): Promise<unknown> {
    if (nodeId !== this.self.id) throw new NodeUnreachableError(nodeId, `node ${nodeId} is not part of this one-node deployment`);
    const handler = this.handlers.get(channel);
    if (!handler) throw new RemoteError('internal', `no handler for ${channel}`);
    return handler(payload);
  }

  serve(channel: string, handler: RequestHandler): void {
    this.handlers.set(channel, handler);
  }

  async liveNodes(): Promise<NodeInfo[]> {
    return [this.self];
  }

  async isLive(nodeId: string): Promise<boolean> {
    return nodeId === this.self.id;
  }

  onNodeLost(): void {
    // Alone: no other node can be lost.
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }
}

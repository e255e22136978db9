/**
 * The nodes of a deployment and the requests one node makes of another. A call's media lives on
 * one node (the mediasoup router its teller's node created); whichever node a participant's socket
 * is on, their media requests run there. One node (no REDIS_URL): every request is to itself.
 * Several nodes: requests travel over Redis pub/sub, and each node keeps a heartbeat with a TTL so
 * the others notice when it dies and take over what it left (src/cluster/redis.ts).
 */
import { z } from 'zod';

/** What a node announces about itself. */
export const nodeInfoSchema = z.object({
  id: z.string().min(1).max(128),
  /** The address browsers reach this node's media at (RTC_ANNOUNCED_ADDRESS, else RTC_LISTEN_IP). */
  mediaAddress: z.string().min(1).max(256),
  pid: z.number().int(),
  startedAt: z.number().int(),
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

/** A request for another node failed as such (not the operation it carried). */
export class NodeUnreachableError extends Error {
  readonly code = 'unavailable' as const;
  constructor(readonly nodeId: string, message: string) {
    super(message);
    this.name = 'NodeUnreachableError';
  }
}

/**
 * An error the serving node's handler threw, carried back to the caller with its code, so a
 * typed refusal on the media node (invalid_state, not_found, forbidden) reaches the page as such.
 */
export class RemoteError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = 'RemoteError';
  }
}

export type RequestHandler = (payload: unknown) => Promise<unknown>;

export interface Cluster {
  readonly self: NodeInfo;
  /** Several nodes can take part (false: this node is alone by configuration). */
  readonly shared: boolean;
  /** Runs `channel`'s handler on node `nodeId` (this node too) and resolves with its answer. */
  request(nodeId: string, channel: string, payload: unknown, timeoutMs?: number): Promise<unknown>;
  /** Serves one channel on this node. */
  serve(channel: string, handler: RequestHandler): void;
  /** Nodes whose heartbeat is current. */
  liveNodes(): Promise<NodeInfo[]>;
  isLive(nodeId: string): Promise<boolean>;
  /**
   * Called on exactly one live node when another node's heartbeat has run out, to take over what
   * it left (its calls fail; its waiting customers and tellers get their grace period here). Also
   * called with this node's own id when it starts under a NODE_ID whose earlier process died: the
   * handlers must leave alone what this process already holds.
   */
  onNodeLost(handler: (nodeId: string) => Promise<void>): void;
  close(): Promise<void>;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

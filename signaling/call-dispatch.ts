/**
 * A call's media live on one node: the node whose router accepted the offer (the teller's node at
 * that moment). The customer's socket may be on another node, and after a reconnect the teller's
 * may be too. Every operation on a call goes through here: it runs in process when the call is on
 * this node, and otherwise is sent to the node the session names (`mediaNode`) over the cluster,
 * which runs the same code and answers. Refusals keep their typed code across the hop.
 *
 * Payloads that arrive from another node are parsed again with the same schemas as on the socket:
 * Redis is shared infrastructure, not part of this process.
 */
import { z } from 'zod';
import type { Logger } from '../src/logger.ts';
import type { StateStore } from '../src/store/types.ts';
import { NodeUnreachableError, RemoteError, type Cluster } from '../src/cluster/types.ts';
import type { CallCoordinator } from './calls.ts';
import { SignalingError } from './handlers.ts';

const CHANNEL = 'call';
const envelopeSchema = z.object({ op: z.string().min(1).max(64), sessionId: z.string().min(1).max(128), args: z.unknown() });

type Operation = { schema: z.ZodType; run: (sessionId: string, args: unknown) => Promise<unknown> };

export class CallDispatch {
  private readonly ops = new Map<string, Operation>();

  constructor(
    private readonly calls: CallCoordinator,
    private readonly store: StateStore,
    private readonly cluster: Cluster,
    private readonly log: Logger,
  ) {
    cluster.serve(CHANNEL, async (payload) => {
      const env = envelopeSchema.safeParse(payload);
      if (!env.success) throw new SignalingError('bad_request', 'malformed call operation');
      return this.runHere(env.data.op, env.data.sessionId, env.data.args);
    });
  }

  /**
   * Declares an operation on a call. `run` is what the node holding the call does; the returned
   * function is what any node calls. The result must be plain JSON (it may cross nodes).
   */
  define<S extends z.ZodType, R>(name: string, schema: S, run: (sessionId: string, args: z.infer<S>) => Promise<R>): (sessionId: string, args: z.input<S>) => Promise<R> {
    if (this.ops.has(name)) throw new Error(`call operation ${name} is defined twice`);
    this.ops.set(name, { schema, run: run as Operation['run'] });
    return (sessionId, args) => this.dispatch(name, sessionId, args) as Promise<R>;
  }

  private async dispatch(op: string, sessionId: string, args: unknown): Promise<unknown> {
    if (this.calls.get(sessionId)) return this.runHere(op, sessionId, args);
    const owner = (await this.store.getSession(sessionId))?.mediaNode;
    // No call anywhere, or one this node held (now ended): the local operation gives the answer.
    if (!owner || owner === this.calls.nodeId) return this.runHere(op, sessionId, args);
    try {
      return await this.cluster.request(owner, CHANNEL, { op, sessionId, args });
    } catch (err) {
      // A RemoteError keeps its code: handle() turns a known code into the typed refusal, any other into internal.
      if (err instanceof RemoteError) throw err;
      if (err instanceof NodeUnreachableError) {
        this.log.warn({ sessionId, op, mediaNode: owner, msg: err.message }, 'the node holding this call did not answer');
        throw new SignalingError('unavailable', 'the server holding this call is not reachable; try again');
      }
      throw err;
    }
  }

  private async runHere(name: string, sessionId: string, args: unknown): Promise<unknown> {
    const op = this.ops.get(name);
    if (!op) throw new SignalingError('bad_request', `unknown call operation ${name}`);
    const parsed = op.schema.safeParse(args);
    if (!parsed.success) throw new SignalingError('bad_request', `${name}: ${parsed.error.issues[0]?.message ?? 'invalid arguments'}`);
    return op.run(sessionId, parsed.data);
  }
}

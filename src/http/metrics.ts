import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { OperationsMetrics } from '../operations/metrics.ts';
import { HttpError } from './errors.ts';

/**
 * `GET /metrics`: the Prometheus text exposition of this node.
 * With METRICS_TOKEN set, the scraper must send `Authorization: Bearer <METRICS_TOKEN>` (401
 * otherwise). Unset, the route is open: run it so only the monitoring network reaches it (queue
 * lengths and call counts are business figures, not secrets, but not for the public either).
 */
export async function metricsRoutes(app: FastifyInstance, opts: { metrics: OperationsMetrics; token: string | undefined }): Promise<void> {
  const expected = opts.token ? digest(opts.token) : undefined;
  const headerSchema = z.object({ authorization: z.string().regex(/^Bearer \S+$/, 'expected "Bearer <token>"') });

  app.get('/metrics', async (req, reply) => {
    if (expected) {
      const parsed = headerSchema.safeParse(req.headers);
      if (!parsed.success) throw new HttpError(401, 'unauthorized', 'the metrics need Authorization: Bearer <METRICS_TOKEN>');
      // Compared as digests: equal length, constant time, whatever the caller sent.
      if (!timingSafeEqual(digest(parsed.data.authorization.slice('Bearer '.length)), expected)) {
        throw new HttpError(401, 'unauthorized', 'wrong metrics token');
      }
    }
    const { contentType, body } = await opts.metrics.render();
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

import type { FastifyInstance } from 'fastify';

/** Liveness (the process answers) and readiness (it should get new work: false while draining). */
export async function healthRoutes(app: FastifyInstance, opts: { isDraining: () => boolean }): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) =>
    opts.isDraining() ? reply.code(503).send({ status: 'draining' }) : reply.send({ status: 'ready' }),
  );
}

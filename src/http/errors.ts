import type { FastifyInstance, FastifyReply } from 'fastify';
import type { z } from 'zod';
import type { ErrorCode } from '../../signaling/protocol.ts';

/** Optional extras of an HttpError: a finer `reason` in the body, a Retry-After header. */
export interface HttpErrorDetails {
  /** A machine-readable refinement of `code` (e.g. `multiple_faces` for a 422 `bad_request`). */
  reason?: string;
  /** Seconds, sent as Retry-After (503, 429). */
  retryAfterS?: number;
}

/** An HTTP error with a typed code; the body is always `{ error: { code, message, reason? } }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details: HttpErrorDetails = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Parses an input with its zod schema or fails with a 400 that names the fields. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.infer<S> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const detail = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || what}: ${i.message}`).join('; ');
    throw new HttpError(400, 'bad_request', `invalid ${what}: ${detail}`);
  }
  return parsed.data;
}

export function sendError(reply: FastifyReply, status: number, code: ErrorCode, message: string, reason?: string): FastifyReply {
  return reply.code(status).send({ error: reason === undefined ? { code, message } : { code, message, reason } });
}

/** Maps every thrown error (ours, Fastify's body parser and limits, anything else) to the typed body. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof HttpError) {
      if (err.details.retryAfterS !== undefined) reply.header('retry-after', String(Math.ceil(err.details.retryAfterS)));
      return sendError(reply, err.status, err.code, err.message, err.details.reason);
    }
    const status = err.statusCode ?? 500;
    if (status === 413) return sendError(reply, 413, 'too_large', 'request body too large');
    if (status === 415) return sendError(reply, 415, 'bad_request', 'unsupported content type');
    if (status >= 400 && status < 500) return sendError(reply, status, 'bad_request', err.message);
    req.log.error({ err }, 'request failed');
    return sendError(reply, 500, 'internal', 'internal error');
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
}

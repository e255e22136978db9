import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Structured logs. Secrets and raw PII never reach a line: the redact paths below cover the
 * fields that could carry them, and callers mask ID numbers with maskId() before logging.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'videoteller' },
      redact: {
        paths: [
          'password',
          '*.password',
          'token',
          '*.token',
          'authorization',
          '*.authorization',
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'secret',
          '*.secret',
          'photo',
          '*.photo',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** Keep the last 4 characters of an identifier such as an ID or account number. */
export function maskId(value: string): string {
  if (value.length <= 4) return '*'.repeat(value.length);
  return '*'.repeat(value.length - 4) + value.slice(-4);
}

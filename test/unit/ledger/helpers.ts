import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../../src/logger.ts';

/** A temp directory removed by the returned function. */
export function tempDir(prefix = 'vt-ledger-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A real pino logger whose JSON lines are kept for assertions. */
export function capturingLogger(level = 'debug'): { log: Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      out.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const log = createLogger(level, stream);
  return { log, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export const silentLogger = (): Logger => createLogger('silent');

export function entryInput(i: number, sessionId = `session-${i % 3}`) {
  return { sessionId, type: 'test.event', actor: i % 2 ? 'system' : 'teller-7', payload: { n: i, sha256: 'ab'.repeat(32), score: i / 1000 } };
}

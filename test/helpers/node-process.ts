/**
 * A server node as its own process (`node --import tsx src/main.ts`, what `npm start` runs after
 * set-up), so a test can kill it the way a machine dies: SIGKILL, no shutdown code runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../bench/util.ts';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface NodeProcess {
  name: string;
  url: string;
  port: number;
  dataDir: string;
  /** The node's log (pino JSON lines), kept for a failing test's diagnosis. */
  logFile: string;
  child: ChildProcess;
  /** SIGKILL: the process dies at once, as on a power cut. */
  kill(): Promise<void>;
  /** SIGTERM: graceful shutdown (drain, flush). */
  stop(): Promise<void>;
}

export async function startNodeProcess(name: string, env: Record<string, string>): Promise<NodeProcess> {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `videoteller-${name}-`));
  const logFile = path.join(dataDir, 'node.log');
  const log = createWriteStream(logFile);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? os.tmpdir(),
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info',
      MEDIA_WORKERS: '1',
      RTC_LISTEN_IP: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`node ${name} exited with ${child.exitCode} before it was ready (log: ${logFile})`);
    const ready = await fetch(`${url}/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`node ${name} was not ready within 90 s (log: ${logFile})`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const waitExit = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { name, url, port, dataDir, logFile, child, kill: () => waitExit('SIGKILL'), stop: () => waitExit('SIGTERM') };
}

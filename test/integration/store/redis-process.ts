import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';

/**
 * A redis-server of the test's own on a loopback port, persisting the way src/store/README.md
 * requires (AOF, fsync on every write), so the test can stop and start it and see what survives.
 */
export class RedisProcess {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'videoteller-redis-'));
  readonly url: string;
  private child?: ChildProcess;
  private stderr = '';

  constructor(readonly port: number) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    if (!existsSync(REDIS_SERVER_BIN)) throw new Error(`${REDIS_SERVER_BIN} not found: apt-get install redis-server (or set REDIS_SERVER_BIN)`);
    // prettier-ignore
    const args = [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir,
      '--save', '', '--appendonly', 'yes', '--appendfsync', 'always',
      '--daemonize', 'no', '--protected-mode', 'yes', '--logfile', '',
    ];
    const child = spawn(REDIS_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${this.stderr}`))));
    await Promise.race([this.waitUntilAnswering(), exited]);
  }

  /** SIGTERM: Redis flushes the AOF and exits, as a service manager's restart does. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async waitUntilAnswering(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch {
        // not up yet
      } finally {
        probe.disconnect();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on ${this.port} did not answer: ${this.stderr}`);
  }
}

/** A loopback port for the test's redis-server: 6390 and up, away from the shared 6379. */
export function redisTestPort(): number {
  return 6390 + Math.floor(Math.random() * 2000);
}

/** Starts a redis-server on a free test port (tries a few, in case one is taken). */
export async function startRedisProcess(): Promise<RedisProcess> {
  let last: unknown;
  for (let i = 0; i < 5; i++) {
    const proc = new RedisProcess(redisTestPort());
    try {
      await proc.start();
      return proc;
    } catch (err) {
      last = err;
      await proc.dispose();
    }
  }
  throw last;
}

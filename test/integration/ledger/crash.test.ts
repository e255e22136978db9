/**
 * Crash safety: a child process appends with acknowledgements and is killed with SIGKILL at
 * random moments (during start-up and recovery, mid-append, mid-segment-roll, mid-checkpoint),
 * many times over the same ledger. After every kill the ledger reopens with every acknowledged
 * entry intact, and `videoteller verify` passes.
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { toBase64 } from '../../../src/ledger/bytes.ts';
import { FileLedger } from '../../../src/ledger/file-ledger.ts';
import { KeyRing } from '../../../src/ledger/keyring.ts';
import { capturingLogger, tempDir } from '../../unit/ledger/helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const CHILD = path.join(here, 'crash-child.ts');
const CLI = path.join(root, 'bin/videoteller.mjs');
const ORIGIN = 'crash.example/ledger';
const RUNS = Number(process.env.CRASH_RUNS ?? 24);

interface RunResult {
  acks: Map<number, string>;
  sawReady: boolean;
  killedAfterMs: number;
}

/** Runs the child until a random moment, kills it with SIGKILL, returns what it acknowledged. */
function runAndKill(dataDir: string, seed: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const writers = [1, 4, 16][seed % 3]!;
    const segmentBytes = seed % 2 ? 32 * 1024 : 1024 * 1024;
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, ORIGIN, String(writers), String(segmentBytes)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acks = new Map<number, string>();
    let sawReady = false;
    let buffered = '';
    let stderr = '';
    const started = Date.now();
    let killedAt = 0;
    const kill = () => {
      if (killedAt) return;
      killedAt = Date.now();
      child.kill('SIGKILL');
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!; // a line cut by the kill is ignored
      for (const line of lines) {
        const [word, a, b] = line.split(' ');
        if (word === 'ready' && !sawReady) {
          sawReady = true;
          // Most runs die while appending; the delay spreads kills over many phases.
          if (seed % 4 !== 0) setTimeout(kill, Math.floor(Math.random() * 250));
        } else if (word === 'ack') {
          acks.set(Number(a), b!);
        }
      }
    });
    child.stderr.on('data', (c) => (stderr += String(c)));
    // One run in four is killed at a random moment from spawn: during start-up or recovery.
    if (seed % 4 === 0) setTimeout(kill, 100 + Math.floor(Math.random() * 800));
    const guard = setTimeout(kill, 15_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL') reject(new Error(`child exited on its own (${code}): ${stderr}`));
      else resolve({ acks, sawReady, killedAfterMs: killedAt - started });
    });
  });
}

describe('crash safety (SIGKILL during appends)', () => {
  it(`keeps every acknowledged entry across ${RUNS} kills, and the ledger verifies after each`, async () => {
    const tmp = tempDir('vt-crash-');
    try {
      const acked = new Map<number, string>();
      let runsWithAcks = 0;
      let runsKilledBeforeReady = 0;
      let tornTails = 0;
      for (let run = 0; run < RUNS; run++) {
        const result = await runAndKill(tmp.dir, run);
        for (const [i, h] of result.acks) {
          // An index is never acknowledged twice with different content.
          if (acked.has(i)) expect(acked.get(i), `index ${i} acknowledged twice`).toBe(h);
          acked.set(i, h);
        }
        if (result.acks.size > 0) runsWithAcks++;
        if (!result.sawReady) runsKilledBeforeReady++;

        // Restart: recovery must keep every acknowledged entry, byte for byte.
        const { log, lines } = capturingLogger('warn');
        const keyRing = await KeyRing.open({ dir: path.join(tmp.dir, 'keys'), log });
        const ledger = await FileLedger.open({ dir: path.join(tmp.dir, 'ledger'), origin: ORIGIN, keyRing, log, checkpointIntervalMs: 1000 });
        const maxAcked = Math.max(-1, ...acked.keys());
        expect(ledger.size, `run ${run}: size after restart`).toBeGreaterThan(maxAcked);
        const stored = ledger.size > 0 ? await ledger.getEntries(0, ledger.size) : [];
        for (const [i, h] of acked) expect(toBase64(stored[i]!.leafHash), `run ${run}: acknowledged entry ${i}`).toBe(h);
        await ledger.close();
        tornTails += lines().filter((l) => String(l.msg).startsWith('dropped a torn')).length;

        // And the offline verifier agrees, with only the public keys.
        const cli = spawnSync(process.execPath, [CLI, 'verify', path.join(tmp.dir, 'ledger'), '--keys', path.join(tmp.dir, 'keys', 'jwks.json'), '--json'], {
          cwd: root,
          encoding: 'utf8',
        });
        expect(cli.status, `run ${run}: videoteller verify\n${cli.stdout}\n${cli.stderr}`).toBe(0);
        const report = JSON.parse(cli.stdout) as { ok: boolean; entries: number; checkpoints: { latest: { size: number } } };
        expect(report).toMatchObject({ ok: true, entries: stored.length });
        expect(report.checkpoints.latest.size).toBe(stored.length);
      }
      // The kills really landed mid-append (and some during start-up).
      expect(runsWithAcks).toBeGreaterThanOrEqual(RUNS / 2);
      expect(runsKilledBeforeReady + runsWithAcks).toBeGreaterThan(0);
      expect(acked.size).toBeGreaterThan(100);
      console.info(`crash test: ${RUNS} kills, ${acked.size} acknowledged entries kept, ${runsKilledBeforeReady} kills before ready, ${tornTails} torn tails dropped`);
    } finally {
      tmp.remove();
    }
  }, 300_000);
});

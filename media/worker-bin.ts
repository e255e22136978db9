/**
 * Which mediasoup-worker binary mediasoup spawns.
 *
 * mediasoup reads `MEDIASOUP_WORKER_BIN` once, when its module is first evaluated
 * (`node/lib/Worker.js`), so this module must be evaluated BEFORE anything imports a value from
 * 'mediasoup'. ES modules evaluate their imports in order, so put
 *
 *     import '../media/worker-bin.ts';
 *
 * above the first import that leads to mediasoup (src/app.ts does; media/worker-pool.ts does as
 * its first import too, so importing the pool is enough). `import type` from 'mediasoup' is erased
 * and does not count. `MediaWorkerPool.start()` checks the result and fails with a clear message
 * if mediasoup was loaded too early or the binary is missing.
 *
 * Resolution, first match wins:
 * 1. `MEDIASOUP_WORKER_BIN` set in the environment: used as given (an explicit choice is never
 *    second-guessed; if the file is missing, the pool's start says so);
 * 2. the project's build cache, `${VIDEOTELLER_CACHE:-$HOME/.cache/videoteller}/mediasoup-worker-<version>/mediasoup-worker`,
 *    written by `scripts/build-mediasoup-worker.sh` (same variable, same default) for the mediasoup version installed in
 *    node_modules (the version in the path keeps a stale binary from being used after an upgrade);
 * 3. mediasoup's default, `node_modules/mediasoup/worker/out/Release/mediasoup-worker`, where
 *    `scripts/setup.sh` copies the built binary.
 * In cases 2 and 3 this module sets `process.env.MEDIASOUP_WORKER_BIN` (case 3 only to make the
 * choice visible; mediasoup would pick the same path).
 *
 * This module imports nothing from mediasoup: it reads mediasoup's package.json from disk.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export type WorkerBinSource = 'env' | 'cache' | 'default';

export interface WorkerBinResolution {
  /** Absolute path (or the env value as given) of the binary mediasoup will spawn. */
  path: string;
  source: WorkerBinSource;
  /** The mediasoup version installed in node_modules. */
  mediasoupVersion: string;
}

const require = createRequire(import.meta.url);

/** Root folder of the installed mediasoup package (resolving its entry point does not load it). */
function mediasoupRoot(): string {
  // 'mediasoup/package.json' is not in the package's "exports"; the entry is node/lib/index.js.
  return path.resolve(path.dirname(require.resolve('mediasoup')), '..', '..');
}

export function installedMediasoupVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(mediasoupRoot(), 'package.json'), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('cannot read the installed mediasoup version');
  return pkg.version;
}

/**
 * The build cache's binary for a mediasoup version: the path scripts/build-mediasoup-worker.sh
 * writes, `${VIDEOTELLER_CACHE:-$HOME/.cache/videoteller}/mediasoup-worker-<version>/mediasoup-worker`.
 */
/**
 * The build of the worker: scripts/build-mediasoup-worker.sh's WORKER_BUILD_REV (the same value,
 * checked by a test). It changes when the shims or patches change, so an older build is not used.
 */
export const WORKER_BUILD_REV = 'vt2';

export function cachedWorkerBinPath(version: string, home: string = os.homedir(), cacheRoot?: string): string {
  return path.join(cacheRoot || path.join(home, '.cache', 'videoteller'), `mediasoup-worker-${version}-${WORKER_BUILD_REV}`, 'mediasoup-worker');
}

export function defaultWorkerBinPath(): string {
  return path.join(mediasoupRoot(), 'worker', 'out', 'Release', 'mediasoup-worker');
}

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Pure resolution (no side effect), for tests and diagnostics. */
export function resolveWorkerBin(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): WorkerBinResolution {
  const mediasoupVersion = installedMediasoupVersion();
  const fromEnv = env['MEDIASOUP_WORKER_BIN'];
  if (fromEnv) return { path: fromEnv, source: 'env', mediasoupVersion };
  const cached = cachedWorkerBinPath(mediasoupVersion, home, env['VIDEOTELLER_CACHE']);
  if (isExecutable(cached)) return { path: cached, source: 'cache', mediasoupVersion };
  return { path: defaultWorkerBinPath(), source: 'default', mediasoupVersion };
}

/** Whether mediasoup's Worker module was already evaluated (then MEDIASOUP_WORKER_BIN is too late). */
export function mediasoupAlreadyLoaded(): boolean {
  const workerJs = path.join(mediasoupRoot(), 'node', 'lib', 'Worker.js');
  return require.cache[workerJs] !== undefined;
}

/** The resolution made when this module was first evaluated; it set MEDIASOUP_WORKER_BIN. */
export const workerBinResolution: WorkerBinResolution = resolveWorkerBin();
/** True if mediasoup had been loaded before this module ran, so the choice above may not apply. */
export const loadedTooLate: boolean = mediasoupAlreadyLoaded();
if (workerBinResolution.source !== 'env') process.env['MEDIASOUP_WORKER_BIN'] = workerBinResolution.path;

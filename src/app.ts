import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import '../media/worker-bin.ts';
import { MediaWorkerPool } from '../media/worker-pool.ts';
import { QueueRouter } from '../signaling/router.ts';
import { createSignaling, type Signaling } from '../signaling/server.ts';
import { openSocketAdapter } from '../signaling/socket-adapter.ts';
import { ApiKeys } from './auth/api-keys.ts';
import { DEMO_STAFF_FILE, StaffDirectory } from './auth/staff-directory.ts';
import { StaffTokens } from './auth/staff-tokens.ts';
import type { Config } from './config.ts';
import type { EvidenceSink } from './evidence.ts';
import { authRoutes } from './http/auth.ts';
import { authorizationRoutes, loadPolicy } from './http/authorizations.ts';
import { complianceRoutes } from './http/compliance.ts';
import { installErrorHandler } from './http/errors.ts';
import { openApiRoutes } from './http/openapi.ts';
import { healthRoutes, mediaCheck, postgresCheck, redisCheck } from './http/health.ts';
import { metricsRoutes } from './http/metrics.ts';
import { CallStats } from './operations/call-stats.ts';
import { OperationsMetrics } from './operations/metrics.ts';
import { referencePhotoRoutes, uploadLimits } from './http/reference-photo.ts';
import { sessionRoutes } from './http/sessions.ts';
import { openServerLedger, type ServerLedger } from './ledger/server-ledger.ts';
import { IdentityService } from './identity/service.ts';
import { finalReason } from '../signaling/decisions.ts';
import { createOneTimeCodes } from './otp/index.ts';
import { openWebhookOutbox } from './webhooks/index.ts';
import type { Logger } from './logger.ts';
import { openStore } from './store/index.ts';
import { openCluster } from './cluster/index.ts';
import type { StateStore } from './store/types.ts';

const CLIENT_DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '../client-web/dist');
const DEMO_API_KEY = 'demo-bank:demo-bank-api-key-change-me';

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface VideoTellerApp {
  config: Config;
  http: FastifyInstance;
  store: StateStore;
  router: QueueRouter;
  media: MediaWorkerPool;
  signaling: Signaling;
  ledger: ServerLedger;
  evidence: EvidenceSink;
  identity: IdentityService;
  /** Prometheus metrics (GET /metrics) and the contact-centre figures (callStats.snapshot(), for the supervisor board). */
  operations: { metrics: OperationsMetrics; callStats: CallStats };
  log: Logger;
  /** The HTTP routes as registered (method, url). */
  routes: ReadonlyArray<{ method: string; url: string }>;
  /** Listens on HOST:PORT; resolves to the base URL. */
  listen(): Promise<string>;
  /**
   * Graceful shutdown: stop taking new sessions and offers (readiness goes false), let calls in
   * progress finish for up to `drainMs`, end the rest, close media and flush the ledger.
   */
  shutdown(drainMs: number): Promise<void>;
  /** Immediate shutdown (tests): the same as shutdown(0). */
  close(): Promise<void>;
}

/** Composes the server from its parts. Nothing listens until `listen()`. */
export async function buildApp(config: Config, log: Logger): Promise<VideoTellerApp> {
  mkdirSync(config.DATA_DIR, { recursive: true, mode: 0o700 });

  const staffFile = config.STAFF_FILE ?? DEMO_STAFF_FILE;
  if (!config.STAFF_FILE) log.warn({ file: staffFile }, 'STAFF_FILE not set: using the demo staff directory (demo passwords)');
  const directory = StaffDirectory.load(staffFile);
  if (!config.API_KEYS) log.warn('API_KEYS not set: the demo API key is accepted');
  const apiKeys = new ApiKeys(config.API_KEYS ?? DEMO_API_KEY);
  const staffTokens = new StaffTokens(config.JWT_SECRET ?? localSecret(config.DATA_DIR, 'jwt-secret', log), config.STAFF_TOKEN_TTL_S);
  const policy = loadPolicy(config.POLICY_FILE);

  const metrics = new OperationsMetrics();
  const ledger = await openServerLedger(config, log.child({ part: 'ledger' }));
  ledger.onAppend((_entry, seconds, ok) => metrics.observeAppend(seconds, ok));
  const evidence = ledger.evidence;
  const store: StateStore = await openStore(config, log.child({ part: 'store' }));
  const identity = new IdentityService(config, log.child({ part: 'identity' }), {
    onFrameAnalyzed: (analysisMs, latencyMs) => metrics.observeFrame(analysisMs, latencyMs),
  });
  // Undelivered webhooks left on disk by the last run resume here.
  const webhooks = await openWebhookOutbox(config, evidence, log.child({ part: 'webhooks' }));
  const oneTimeCodes = await createOneTimeCodes(config, evidence, log.child({ part: 'otp' }));
  if (config.LIVENESS_CHALLENGE_TYPES) {
    log.warn({ challenges: config.LIVENESS_CHALLENGE_TYPES }, 'LIVENESS_CHALLENGE_TYPES is set: liveness challenges are predictable (tests only)');
  }
  const media = await MediaWorkerPool.start({
    numWorkers: config.MEDIA_WORKERS,
    logLevel: config.MEDIASOUP_LOG_LEVEL,
    listenIp: config.RTC_LISTEN_IP,
    announcedAddress: config.RTC_ANNOUNCED_ADDRESS,
    rtcMinPort: config.RTC_MIN_PORT,
    rtcMaxPort: config.RTC_MAX_PORT,
    logger: log.child({ part: 'media' }),
  });
  const router = new QueueRouter(
    store,
    evidence,
    {
      mode: config.ROUTING_MODE,
      offerTimeoutMs: config.OFFER_TIMEOUT_MS,
      maxMissedOffers: config.MAX_MISSED_OFFERS,
      wrapUpMs: config.WRAP_UP_MS,
      priorityAgeingS: config.PRIORITY_AGEING_S,
      declineCooldownMs: config.OFFER_TIMEOUT_MS,
    },
    log.child({ part: 'router' }),
  );
  const callStats = new CallStats(router, store, config.SERVICE_LEVEL_TARGET_S, {
    onSharedError: (err) => log.warn({ err }, 'call counts could not be added to the shared store: the board undercounts'),
  });
  ledger.onAppend((entry, _seconds, ok) => ok && callStats.observeEvidence(entry));

  const http = Fastify({
    loggerInstance: log.child({ part: 'http' }) as FastifyBaseLogger,
    // Request logging stays on (Fastify's default): session ids are logged by the handlers, and
    // request ids tie one request's lines together.
    bodyLimit: 1024 * 1024,
  });
  installErrorHandler(http);
  // Every route as registered: the OpenAPI document is checked against this list (test/integration/openapi.test.ts).
  const routes: Array<{ method: string; url: string }> = [];
  http.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD') routes.push({ method, url: r.url });
  });
  let draining = false;
  let publicUrl = config.PUBLIC_URL ?? `http://127.0.0.1:${config.PORT}`;
  await http.register(healthRoutes, {
    isDraining: () => draining,
    checks: [
      ...(config.REDIS_URL ? [redisCheck(config.REDIS_URL)] : []),
      ...(config.DATABASE_URL ? [postgresCheck(config.DATABASE_URL, log)] : []),
      mediaCheck(() => media.workers().length, config.MEDIA_WORKERS),
    ],
    log: log.child({ part: 'health' }),
  });
  await http.register(metricsRoutes, { metrics, token: config.METRICS_TOKEN });
  await http.register(authRoutes, { directory, staffTokens });
  await http.register(sessionRoutes, {
    isDraining: () => draining,
    store,
    router,
    evidence,
    apiKeys,
    publicUrl: () => publicUrl,
    customerTokenTtlS: config.CUSTOMER_TOKEN_TTL_S,
    identity,
    imageLimits: uploadLimits(config),
  });
  await http.register(referencePhotoRoutes, { store, evidence, apiKeys, identity, limits: uploadLimits(config) });
  await ledger.registerRoutes(http, staffTokens);
  await http.register(complianceRoutes, {
    ledger: ledger.ledger,
    keys: ledger.keyRing,
    blobs: identity.blobs,
    staffTokens,
    recordOf: async (id) => (await store.getSession(id))?.decision?.record ?? (await ledger.recordOf(id)),
    awaitsCosign: async (id) => (await store.getSession(id))?.decision?.status === 'awaiting_cosign',
    derivedDir: path.join(config.DATA_DIR, 'derived'),
    log: log.child({ part: 'compliance' }),
  });
  await http.register(authorizationRoutes, { apiKeys, ledger, policy });
  await http.register(openApiRoutes, { version: PACKAGE_VERSION });
  if (existsSync(CLIENT_DIST)) {
    await http.register(fastifyStatic, { root: CLIENT_DIST, prefix: '/', index: ['index.html'], redirect: true });
  } else {
    log.warn({ dir: CLIENT_DIST }, 'client-web is not built: pages are not served (npm run build:client)');
  }
  http.get('/', async (_req, reply) => reply.redirect('/teller/'));

  const cluster = await openCluster(config, log.child({ part: 'cluster' }));
  const socketAdapter = config.REDIS_URL ? await openSocketAdapter({ url: config.REDIS_URL, keyPrefix: config.REDIS_KEY_PREFIX, log: log.child({ part: 'signaling' }) }) : undefined;
  const signaling = createSignaling(http.server, {
    ...(socketAdapter ? { socketAdapter: socketAdapter.adapter } : {}),
    cluster,
    store,
    router,
    pool: media,
    evidence,
    staffTokens,
    reconnectGraceMs: config.RECONNECT_GRACE_MS,
    records: { issueRecord: (input) => ledger.issueRecord(input) },
    policy: policy.policy,
    oneTimeCodes: { codes: oneTimeCodes, webhooks },
    onRecordIssued: (session, result) => {
      const d = session.decision!;
      webhooks
        .enqueue(session.createdBy, {
          type: 'session.decided',
          data: { sessionId: session.id, customerRef: session.customerRef, decision: result.decision, reason: finalReason(d), record: d.record! },
        })
        .catch((err) => log.error({ err, sessionId: session.id }, 'the session.decided webhook could not be queued'));
    },
    identity: { identity, ...(config.LIVENESS_CHALLENGE_TYPES ? { challengeTypes: config.LIVENESS_CHALLENGE_TYPES } : {}) },
    recording: { blobs: identity.blobs, workDir: path.join(config.DATA_DIR, 'recording-work') },
    // The board shows the whole deployment's figures, not this node's.
    callStats: { snapshot: () => callStats.deploymentFigures() },
    log: log.child({ part: 'signaling' }),
  });
  metrics.attach({ callStats, callsInProgress: () => signaling.calls.size, media, ledger: ledger.ledger, cluster });

  let closing: Promise<void> | undefined;
  const app: VideoTellerApp = {
    config,
    http,
    store,
    router,
    media,
    signaling,
    ledger,
    evidence,
    identity,
    operations: { metrics, callStats },
    log,
    routes,
    async listen() {
      await http.listen({ host: config.HOST, port: config.PORT });
      const address = http.server.address();
      const port = typeof address === 'object' && address ? address.port : config.PORT;
      const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
      const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
      publicUrl = config.PUBLIC_URL ?? url;
      return url;
    },
    close: () => shutdown(0),
    shutdown: (drainMs: number) => shutdown(drainMs),
  };
  return app;

  function shutdown(drainMs: number): Promise<void> {
    closing ??= (async () => {
      draining = true;
      router.pause();
      log.info({ calls: signaling.calls.size, drainMs }, 'shutting down: draining calls');
      const deadline = Date.now() + drainMs;
      while (signaling.calls.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      router.close();
      callStats.close();
      await signaling.calls.endAll('server_shutdown');
      await signaling.close();
      await cluster.close();
      await socketAdapter?.close();
      await http.close();
      media.close();
      await identity.close();
      await webhooks.close();
      await oneTimeCodes.close();
      await store.close();
      await ledger.close();
      log.info('shut down');
    })();
    return closing;
  }
}

/**
 * A secret kept in DATA_DIR (0600), generated on first start: lets one node run with no
 * configuration. Several nodes must share the secret through the environment instead.
 */
function localSecret(dataDir: string, name: string, log: Logger): string {
  const file = path.join(dataDir, name);
  if (existsSync(file)) {
    const secret = readFileSync(file, 'utf8').trim();
    if (!/^[A-Za-z0-9_-]{43,}$/.test(secret)) throw new Error(`${file} is not a valid secret; delete it to generate a new one`);
    return secret;
  }
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
  log.info({ file }, `generated ${name} on first start`);
  return secret;
}

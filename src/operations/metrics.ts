/**
 * The Prometheus metrics of one app: its own Registry (never prom-client's global one, so several
 * servers in one process — the tests — do not mix their figures), the metric definitions, and the
 * wiring from the parts that produce them. Counters move as events happen; gauges that describe
 * "now" (queues, calls in progress, media workers, checkpoint age) are read on scrape.
 *
 * Counters are this node's (Prometheus adds the `instance` label: that is "per node"); queue
 * gauges come from the shared store and are the same on every node (aggregate with max, not sum).
 */
import type { Cluster } from '../cluster/types.ts';
import client, { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MediaWorkerPool } from '../../media/worker-pool.ts';
import type { Ledger } from '../ledger/types.ts';
import { OFFER_OUTCOMES, type CallStats, type CallStatsListener, type SkillKey } from './call-stats.ts';

const PREFIX = 'videoteller_';
/** Waits in a queue, seconds: a service-level target is usually 20–60 s; waits beyond 10 min are outliers. */
const WAIT_BUCKETS = [1, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600];
/** Face analysis per frame, seconds (tiny detector ~0.13–0.16 s per frame on one core, measured). */
const FACE_BUCKETS = [0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5];
/** Durable appends, seconds (fsync or a PostgreSQL commit: milliseconds when healthy). */
const APPEND_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export interface MetricsSources {
  callStats: CallStats;
  /** Calls in progress on this node (signaling's CallCoordinator). */
  callsInProgress: () => number;
  media: MediaWorkerPool;
  ledger: Ledger;
  /** The deployment's nodes (one node: itself). */
  cluster: Pick<Cluster, 'liveNodes'>;
  now?: () => number;
}

export class OperationsMetrics {
  readonly registry = new Registry();
  private readonly now: () => number;
  private sources: MetricsSources | undefined;
  /** Last CPU time read per worker process, to turn mediasoup's totals into counter increments. */
  private readonly workerCpuMs = new Map<number, number>();
  /** When the latest checkpoint was first seen with its current size (checkpoints carry no time). */
  private checkpointSeen: { size: number; at: number } | undefined;

  readonly offers: Counter<'outcome'>;
  readonly answered: Counter<'business_type' | 'language'>;
  readonly answeredWithinTarget: Counter<'business_type' | 'language'>;
  readonly abandoned: Counter<'business_type' | 'language'>;
  readonly abandonedAfterTarget: Counter<'business_type' | 'language'>;
  readonly mediaConnected: Counter<'business_type' | 'language'>;
  readonly queueWait: Histogram<'business_type' | 'language' | 'outcome'>;
  readonly faceAnalysis: Histogram;
  readonly faceLatency: Histogram;
  readonly ledgerAppend: Histogram<'result'>;
  private readonly workerCpu: Counter<'worker' | 'pid'>;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
    const r = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    const skill = ['business_type', 'language'] as const;
    this.offers = new Counter({ name: `${PREFIX}offers_total`, help: 'Offers closed on this node, by outcome (accepted, declined, withdrawn: the teller went away, timeout, canceled: customer left or teller disconnected)', labelNames: ['outcome'], registers: r });
    for (const o of OFFER_OUTCOMES) this.offers.inc({ outcome: o }, 0);
    this.answered = new Counter({ name: `${PREFIX}calls_answered_total`, help: 'Calls answered (offer accepted) on this node', labelNames: skill, registers: r });
    this.answeredWithinTarget = new Counter({ name: `${PREFIX}calls_answered_within_target_total`, help: 'Calls answered within SERVICE_LEVEL_TARGET_S of entering the queue', labelNames: skill, registers: r });
    this.abandoned = new Counter({ name: `${PREFIX}calls_abandoned_total`, help: 'Customers who left the queue before being answered', labelNames: skill, registers: r });
    this.abandonedAfterTarget = new Counter({ name: `${PREFIX}calls_abandoned_after_target_total`, help: 'Abandoned after waiting longer than SERVICE_LEVEL_TARGET_S', labelNames: skill, registers: r });
    this.mediaConnected = new Counter({ name: `${PREFIX}calls_media_connected_total`, help: 'Answered calls whose media connected (both sides produced)', labelNames: skill, registers: r });
    this.queueWait = new Histogram({ name: `${PREFIX}queue_wait_seconds`, help: 'Time in the queue until answered or abandoned', labelNames: [...skill, 'outcome'], buckets: WAIT_BUCKETS, registers: r });
    this.faceAnalysis = new Histogram({ name: `${PREFIX}face_analysis_seconds`, help: 'Face engine compute time per live frame (detect, landmarks, descriptor)', buckets: FACE_BUCKETS, registers: r });
    this.faceLatency = new Histogram({ name: `${PREFIX}face_match_latency_seconds`, help: 'Live frame submitted to the face engine until its analysis is back (queueing included)', buckets: FACE_BUCKETS, registers: r });
    this.ledgerAppend = new Histogram({ name: `${PREFIX}ledger_append_seconds`, help: 'Evidence append until durable (fsync or commit)', labelNames: ['result'], buckets: APPEND_BUCKETS, registers: r });
    for (const result of ['ok', 'error']) this.ledgerAppend.zero({ result });
    this.workerCpu = new Counter({ name: `${PREFIX}media_worker_cpu_seconds_total`, help: 'CPU time (user + system) of each mediasoup worker process', labelNames: ['worker', 'pid'], registers: r });

    const self = this;
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void | Promise<void>) =>
      new Gauge({ name: `${PREFIX}${name}`, help, labelNames, registers: r, async collect() { if (self.sources) await collect(this); } });

    gauge('service_level_target_seconds', 'SERVICE_LEVEL_TARGET_S', [], (g) => g.set(this.src.callStats.serviceLevelTargetS));
    gauge('service_level_ratio', 'answered within target / (answered + abandoned after target), this node since start; NaN before any', [], async (g) =>
      g.set((await this.snapshotCounts()).serviceLevel ?? Number.NaN),
    );
    gauge('average_speed_of_answer_seconds', 'Mean queue wait of answered calls, this node since start; NaN before any', [], async (g) =>
      g.set((await this.snapshotCounts()).averageSpeedOfAnswerS ?? Number.NaN),
    );
    gauge('connection_rate_ratio', 'Calls whose media connected / calls answered, this node since start; NaN before any', [], async (g) =>
      g.set((await this.snapshotCounts()).connectionRate ?? Number.NaN),
    );
    gauge('queue_length', 'Sessions waiting (queued or being offered), by skill, from the shared store', [...skill], async (g) => {
      g.reset();
      for (const q of await this.src.callStats.queues()) g.set({ business_type: q.businessType, language: q.language }, q.waiting);
    });
    gauge('queue_oldest_wait_seconds', 'Wait of the longest-waiting session, by skill, from the shared store', [...skill], async (g) => {
      g.reset();
      for (const q of await this.src.callStats.queues()) g.set({ business_type: q.businessType, language: q.language }, q.oldestWaitS);
    });
    gauge('cluster_nodes', 'Nodes whose heartbeat is current, each with the media address it announces (1 per node)', ['node', 'media_address'], async (g) => {
      g.reset();
      for (const n of await this.src.cluster.liveNodes()) g.set({ node: n.id, media_address: n.mediaAddress }, 1);
    });
    gauge('calls_in_progress', 'Calls in progress on this node', [], (g) => g.set(this.src.callsInProgress()));
    gauge('media_worker_calls', 'Calls (mediasoup routers) on each media worker of this node', ['worker', 'pid'], (g) => {
      g.reset();
      for (const w of this.src.media.stats()) g.set({ worker: String(w.index), pid: String(w.pid) }, w.routers);
    });
    gauge('media_worker_transports', 'Transports open on each media worker of this node', ['worker', 'pid'], (g) => {
      g.reset();
      for (const w of this.src.media.stats()) g.set({ worker: String(w.index), pid: String(w.pid) }, w.transports);
    });
    gauge('media_workers_alive', 'Live mediasoup workers of this node (of MEDIA_WORKERS)', [], (g) => g.set(this.src.media.workers().length));
    gauge('ledger_size', 'Durable entries in the ledger', [], (g) => g.set(this.src.ledger.size));
    gauge('ledger_unsigned_entries', 'Durable entries not yet covered by a signed checkpoint', [], (g) =>
      g.set(this.src.ledger.size - (this.src.ledger.latestCheckpoint()?.size ?? 0)),
    );
    gauge('ledger_checkpoint_age_seconds', 'Seconds since the latest signed checkpoint was first seen (checkpoints carry no time; sampled on every append and scrape)', [], (g) => {
      this.sampleCheckpoint();
      g.set(this.checkpointSeen ? (this.now() - this.checkpointSeen.at) / 1000 : Number.NaN);
    });
  }

  /** Connects the parts; until then gauges read on scrape are left out. */
  attach(sources: MetricsSources): void {
    this.sources = sources;
    sources.callStats.addListener(this.callListener());
    this.sampleCheckpoint();
  }

  /** The ledger's append observer. */
  observeAppend(seconds: number, ok: boolean): void {
    this.ledgerAppend.observe({ result: ok ? 'ok' : 'error' }, seconds);
    this.sampleCheckpoint();
  }

  /** The face engine's per-frame observer. */
  observeFrame(analysisMs: number, latencyMs: number): void {
    this.faceAnalysis.observe(analysisMs / 1000);
    this.faceLatency.observe(latencyMs / 1000);
  }

  /** The text exposition (reads the media workers' CPU first: that needs a round trip to each worker). */
  async render(): Promise<{ contentType: string; body: string }> {
    await this.sampleWorkerCpu();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private get src(): MetricsSources {
    return this.sources!;
  }

  private snapshotCounts() {
    return this.src.callStats.snapshot();
  }

  private sampleCheckpoint(): void {
    const cp = this.sources?.ledger.latestCheckpoint();
    if (!cp) return;
    if (!this.checkpointSeen || this.checkpointSeen.size !== cp.size) this.checkpointSeen = { size: cp.size, at: this.now() };
  }

  /** mediasoup reports CPU totals; a counter only moves forward, so each scrape adds the difference. */
  private async sampleWorkerCpu(): Promise<void> {
    if (!this.sources) return;
    const workers = this.sources.media.workers();
    await Promise.all(
      workers.map(async (w) => {
        try {
          const ru = await w.worker.getResourceUsage();
          const cpuMs = ru.ru_utime + ru.ru_stime;
          const last = this.workerCpuMs.get(w.pid) ?? 0;
          if (cpuMs > last) this.workerCpu.inc({ worker: String(w.index), pid: String(w.pid) }, (cpuMs - last) / 1000);
          else this.workerCpu.inc({ worker: String(w.index), pid: String(w.pid) }, 0);
          this.workerCpuMs.set(w.pid, Math.max(cpuMs, last));
        } catch {
          // A worker that died between listing and asking: its replacement is read next scrape.
        }
      }),
    );
    const live = new Set(workers.map((w) => w.pid));
    for (const pid of this.workerCpuMs.keys()) if (!live.has(pid)) this.workerCpuMs.delete(pid);
  }

  private callListener(): CallStatsListener {
    const labels = (s: SkillKey | undefined) => ({ business_type: s?.businessType ?? 'unknown', language: s?.language ?? 'unknown' });
    return {
      offerClosed: (outcome) => this.offers.inc({ outcome }),
      answered: (skill, waitS, within) => {
        this.answered.inc(labels(skill));
        this.answeredWithinTarget.inc(labels(skill), within ? 1 : 0);
        this.mediaConnected.inc(labels(skill), 0);
        this.queueWait.observe({ ...labels(skill), outcome: 'answered' }, waitS);
      },
      abandoned: (skill, waitS, after) => {
        this.abandoned.inc(labels(skill));
        this.abandonedAfterTarget.inc(labels(skill), after ? 1 : 0);
        this.queueWait.observe({ ...labels(skill), outcome: 'abandoned' }, waitS);
      },
      mediaConnected: (skill) => this.mediaConnected.inc(labels(skill)),
    };
  }
}

/**
 * A worker in its own process, started by the bench (bench/lib/stack.ts) with its configuration in
 * BENCH_WORKER_CONFIG. `session`: tether's worker exactly as src/worker.ts builds it; `ceiling`: the
 * same worker settings running the minimal workflow of bench/ceiling. Answers `memory` requests
 * over IPC and drains on `shutdown`.
 */
import { readFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { openResources, type Resources } from '../src/resources';
import { createWorker, WORKER_CONCURRENCY } from '../src/worker';
import { ceilingActivities } from './ceiling/activities';
import type { WorkerChildConfig, WorkerMemory } from './lib/stack';

const send = (msg: unknown) => process.send?.(msg);

/**
 * Workflows run in worker threads, each with its own V8 heap that process.memoryUsage() does not
 * see. The inspector reaches them from the main thread: collect garbage, then read heap usage.
 */
class ThreadHeaps {
  private readonly session = new inspector.Session();
  private readonly threads = new Set<string>();
  private readonly replies = new Map<number, (m: { result?: { usedSize?: number; totalSize?: number } }) => void>();
  private nextId = 0;

  async start(): Promise<void> {
    this.session.connect();
    this.session.on('NodeWorker.attachedToWorker', (m: { params: { sessionId: string } }) =>
      this.threads.add(m.params.sessionId),
    );
    this.session.on('NodeWorker.detachedFromWorker', (m: { params: { sessionId: string } }) =>
      this.threads.delete(m.params.sessionId),
    );
    this.session.on('NodeWorker.receivedMessageFromWorker', (m: { params: { message: string } }) => {
      const reply = JSON.parse(m.params.message) as { id?: number; result?: { usedSize?: number; totalSize?: number } };
      if (reply.id !== undefined) {
        this.replies.get(reply.id)?.(reply);
        this.replies.delete(reply.id);
      }
    });
    await this.post('NodeWorker.enable', { waitForDebuggerOnStart: false });
  }

  private post(method: string, params: object): Promise<void> {
    return new Promise((resolve, reject) =>
      this.session.post(method, params, (err) => (err ? reject(err) : resolve())),
    );
  }

  private ask(sessionId: string, method: string) {
    const id = ++this.nextId;
    return new Promise<{ result?: { usedSize?: number; totalSize?: number } }>((resolve) => {
      this.replies.set(id, resolve);
      this.post('NodeWorker.sendMessageToWorker', {
        sessionId,
        message: JSON.stringify({ id, method, params: {} }),
      }).catch(() => resolve({}));
    });
  }

  async usage(): Promise<{ threads: number; used: number; total: number }> {
    let used = 0;
    let total = 0;
    for (const id of this.threads) {
      await this.ask(id, 'HeapProfiler.collectGarbage');
      const r = (await this.ask(id, 'Runtime.getHeapUsage')).result;
      used += r?.usedSize ?? 0;
      total += r?.totalSize ?? 0;
    }
    return { threads: this.threads.size, used, total };
  }
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.env.BENCH_WORKER_CONFIG ?? '{}') as WorkerChildConfig;
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const connection = await NativeConnection.connect({ address: cfg.address });
  let resources: Resources | undefined;
  let worker: Worker;
  if (cfg.kind === 'session') {
    const config = loadConfig({
      ...process.env,
      WS_IDLE_TIMEOUT_MS: String(cfg.idleTimeoutMs),
      LOG_LEVEL: 'error',
      TEMPORAL_ADDRESS: cfg.address,
    });
    const logger = createLogger({ level: 'error', write: (line) => process.stderr.write(line + '\n') });
    resources = openResources(config, logger);
    worker = await createWorker({
      connection,
      namespace: cfg.namespace,
      taskQueue: cfg.taskQueue,
      config,
      resources,
      logger,
      // createWorker takes the bundle's code (src/worker.ts), not a path.
      workflowBundle: { code: readFileSync(cfg.bundlePath, 'utf8') },
    });
  } else {
    // The same cache and concurrency settings as tether's worker (src/worker.ts).
    worker = await Worker.create({
      connection,
      namespace: cfg.namespace,
      taskQueue: cfg.taskQueue,
      workflowBundle: { codePath: cfg.bundlePath },
      activities: ceilingActivities,
      ...WORKER_CONCURRENCY,
      shutdownGraceTime: '10s',
    });
  }

  const heaps = new ThreadHeaps();
  await heaps.start();
  process.on('message', (raw) => {
    const msg = raw as { type: string; id?: number };
    if (msg.type === 'memory') {
      void heaps.usage().then((threads) => {
        (globalThis as { gc?: () => void }).gc?.();
        const m = process.memoryUsage();
        const cpu = process.cpuUsage();
        const memory: WorkerMemory = {
          rss: m.rss,
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          workflowThreads: threads.threads,
          workflowHeapUsed: threads.used,
          workflowHeapTotal: threads.total,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
          cpuUserUs: cpu.user,
          cpuSystemUs: cpu.system,
        };
        send({ type: 'memory', id: msg.id, memory });
      });
    } else if (msg.type === 'shutdown') {
      worker.shutdown();
    }
  });
  process.on('disconnect', () => {
    // The bench went away: drain and exit rather than linger.
    if (worker.getState() === 'RUNNING') worker.shutdown();
  });

  const running = worker.run();
  send({ type: 'ready' });
  await running;
  await resources?.close();
  await connection.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    send({ type: 'error', message: err instanceof Error ? err.message : String(err) });
    process.stderr.write(`[bench worker] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

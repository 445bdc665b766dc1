/**
 * The real stack the bench runs on, beside the Temporal dev server (the tests' `devServerEnv`):
 * the workflow bundles, and workers in child processes so that their memory and CPU are measured
 * apart from the load generator.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

export const ROOT = path.resolve(__dirname, '../..');

export interface Bundles {
  /** tether's workflows (src/workflows). */
  session: string;
  /** The minimal workflow of the ceiling scenario (bench/ceiling). */
  ceiling: string;
  dir: string;
  remove(): void;
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop };

/** Bundles both workflow sets once per run into files the worker children load. */
export async function bundleWorkflows(): Promise<Bundles> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-bench-'));
  const [session, ceiling] = await Promise.all([
    bundleWorkflowCode({ workflowsPath: path.join(ROOT, 'src/workflows/index.ts'), logger: quietLogger }),
    bundleWorkflowCode({ workflowsPath: path.join(ROOT, 'bench/ceiling/workflows.ts'), logger: quietLogger }),
  ]);
  const files = { session: path.join(dir, 'session-workflows.js'), ceiling: path.join(dir, 'ceiling-workflows.js') };
  writeFileSync(files.session, session.code);
  writeFileSync(files.ceiling, ceiling.code);
  return { ...files, dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export type WorkerKind = 'session' | 'ceiling';

export interface WorkerChildConfig {
  kind: WorkerKind;
  address: string;
  namespace: string;
  taskQueue: string;
  bundlePath: string;
  /** WS_IDLE_TIMEOUT_MS of the session worker. */
  idleTimeoutMs: number;
}

export interface WorkerMemory {
  /** Bytes, after a full GC (of the main thread and of the workflow threads). */
  rss: number;
  /** Main thread (activities, SDK). */
  heapUsed: number;
  heapTotal: number;
  /** The worker threads workflows run in. */
  workflowThreads: number;
  workflowHeapUsed: number;
  workflowHeapTotal: number;
  external: number;
  arrayBuffers: number;
  /** CPU time of the worker process since it started, µs. */
  cpuUserUs: number;
  cpuSystemUs: number;
}

type FromChild =
  { type: 'ready' } | { type: 'memory'; id: number; memory: WorkerMemory } | { type: 'error'; message: string };

/** A worker (tether's, or the ceiling's) running in its own Node process. */
export class WorkerChild {
  private nextId = 0;
  private readonly replies = new Map<number, (m: WorkerMemory) => void>();
  readonly exited: Promise<number | null>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    child.on('message', (raw) => {
      const msg = raw as FromChild;
      if (msg.type === 'memory') {
        this.replies.get(msg.id)?.(msg.memory);
        this.replies.delete(msg.id);
      }
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(config: WorkerChildConfig): Promise<WorkerChild> {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', path.join(ROOT, 'bench/worker-process.ts')],
      {
        cwd: ROOT,
        env: { ...process.env, BENCH_WORKER_CONFIG: JSON.stringify(config) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    const worker = new WorkerChild(child);
    await new Promise<void>((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error('worker child did not start within 60 s')), 60_000);
      child.on('message', (raw) => {
        const msg = raw as FromChild;
        if (msg.type === 'ready') {
          clearTimeout(timeout);
          resolve();
        } else if (msg.type === 'error') {
          clearTimeout(timeout);
          reject(new Error(`worker child failed: ${msg.message}`));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timeout);
        reject(new Error(`worker child exited with ${code} before it was ready`));
      });
    }).catch((err: unknown) => {
      child.kill('SIGKILL');
      throw err;
    });
    return worker;
  }

  /** The worker's memory after a full GC, and its CPU time. */
  memory(): Promise<WorkerMemory> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error('worker child did not report its memory')), 30_000);
      this.replies.set(id, (m) => {
        clearTimeout(timeout);
        resolve(m);
      });
      this.child.send({ type: 'memory', id });
    });
  }

  /** Graceful shutdown (drains the worker), then SIGKILL if it hangs. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.send({ type: 'shutdown' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await this.exited;
    clearTimeout(timer);
  }
}

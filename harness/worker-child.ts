/**
 * A worker in its own Node process (harness/worker-process.ts is the child's side): its memory and
 * CPU are measured apart from the load generator (bench), and it can be SIGKILLed (chaos).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { ROOT } from './root';
import type { WorkerMemory } from './worker-memory';
import { MEMORY_ENV, type FromChild, type ToChild } from './worker-protocol';

/** tether's worker (harness/session-worker.ts). */
export const SESSION_WORKER = path.join(ROOT, 'harness/session-worker.ts');

export interface WorkerChildOptions {
  /** The child's entry point: a script that calls `serveWorker`. */
  script: string;
  /** Added to this process's environment (see `workerEnv`). */
  env: Record<string, string>;
  /** Answer `memory()` (the child runs with `--expose-gc`). */
  measureMemory?: boolean;
  /** Each line the child writes; default: copied to this process's stderr. */
  output?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface WorkerExit {
  at: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string[];
}

export class WorkerChild {
  readonly exited: Promise<WorkerExit>;
  private readonly readyP: Promise<void>;
  private readonly stderrTail: string[] = [];
  private readonly replies = new Map<number, (m: WorkerMemory) => void>();
  private nextId = 0;

  private constructor(
    private readonly child: ChildProcess,
    output: (line: string, stream: 'stdout' | 'stderr') => void,
  ) {
    let ready!: () => void;
    let failed!: (err: Error) => void;
    this.readyP = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    // Awaited by `ready()`; a child that dies before anyone asks is reported through `exited`.
    this.readyP.catch(() => undefined);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => output(line, 'stdout'));
    readline.createInterface({ input: child.stderr! }).on('line', (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 30) this.stderrTail.shift();
      output(line, 'stderr');
    });
    child.on('message', (raw) => {
      const msg = raw as FromChild;
      if (msg.type === 'ready') ready();
      else if (msg.type === 'error') failed(new Error(`worker child failed: ${msg.message}`));
      else {
        this.replies.get(msg.id)?.(msg.memory);
        this.replies.delete(msg.id);
      }
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        const tail = [...this.stderrTail];
        failed(new Error(`worker exited during start-up (${code ?? signal}): ${tail.slice(-5).join(' | ')}`));
        resolve({ at: Date.now(), code, signal, stderrTail: tail });
      }),
    );
  }

  /** Spawns the child; `ready()` waits until it polls. */
  static spawn(opts: WorkerChildOptions): WorkerChild {
    // node --import tsx: the pid we signal is the worker itself, not a tsx wrapper.
    const child = spawn(
      process.execPath,
      [...(opts.measureMemory ? ['--expose-gc'] : []), '--import', 'tsx', opts.script],
      {
        cwd: ROOT,
        env: { ...process.env, ...opts.env, ...(opts.measureMemory && { [MEMORY_ENV]: '1' }) },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      },
    );
    return new WorkerChild(child, opts.output ?? ((line) => process.stderr.write(`${line}\n`)));
  }

  /** Spawns the child and waits until it polls. */
  static async start(opts: WorkerChildOptions, timeoutMs?: number): Promise<WorkerChild> {
    const worker = WorkerChild.spawn(opts);
    await worker.ready(timeoutMs);
    return worker;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolves once the worker polls; a child that fails or hangs at start-up is SIGKILLed. */
  async ready(timeoutMs = 120_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`worker child did not start within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    try {
      await Promise.race([this.readyP, timeout]);
    } catch (err) {
      this.child.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The worker's memory after a full GC, and its CPU time (needs `measureMemory`). */
  memory(): Promise<WorkerMemory> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeout = setTimeout(() => reject(new Error('worker child did not report its memory')), 30_000);
      this.replies.set(id, (m) => {
        clearTimeout(timeout);
        resolve(m);
      });
      this.child.send({ type: 'memory', id } satisfies ToChild);
    });
  }

  /** SIGKILL: the worker gets no chance to report what it was doing. */
  kill(): Promise<WorkerExit> {
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** Graceful shutdown (drains the worker), then SIGKILL if it hangs. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Synchronous last resort for process exit. */
  killSync(): void {
    try {
      this.child.kill('SIGKILL');
    } catch {
      // gone
    }
  }
}

import { createWriteStream, type WriteStream } from 'node:fs';
import { sleep } from '../harness/sleep';
import { SESSION_WORKER, WorkerChild, type WorkerExit } from '../harness/worker-child';

export interface SupervisedExit extends WorkerExit {
  /** We killed it (SIGKILL fault or stop); false: it died on its own. */
  expected: boolean;
}

type LineListener = (record: Record<string, unknown>) => void;

/**
 * Runs tether's worker as a child (harness/session-worker.ts); SIGKILLs and restarts it on demand.
 * A worker that dies on its own is recorded (with its last stderr lines) and started again, as a
 * process manager would.
 */
export class WorkerSupervisor {
  private child: WorkerChild | undefined;
  private expectExit = false;
  private stopped = false;
  private listeners: LineListener[] = [];
  private readonly log: WriteStream;
  readonly exits: SupervisedExit[] = [];
  starts = 0;
  /** Set while a restart after an unexpected exit is under way. */
  private restarting: Promise<void> | undefined;

  constructor(
    private readonly env: Record<string, string>,
    logFile: string,
  ) {
    this.log = createWriteStream(logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Each JSON line the worker logs (the ones it is killed on, for one). */
  onLine(fn: LineListener): () => void {
    this.listeners.push(fn);
    return () => (this.listeners = this.listeners.filter((l) => l !== fn));
  }

  async start(timeoutMs = 120_000): Promise<void> {
    this.stopped = false;
    this.expectExit = false;
    const child = WorkerChild.spawn({ script: SESSION_WORKER, env: this.env, output: (l, s) => this.output(l, s) });
    this.child = child;
    this.starts++;
    void child.exited.then((exit) => {
      const expected = this.expectExit;
      this.exits.push({ ...exit, expected });
      if (this.child === child) this.child = undefined;
      if (!expected && !this.stopped) {
        this.restarting = (async () => {
          await sleep(500);
          if (!this.stopped && !this.child) await this.start().catch(() => undefined);
        })().finally(() => (this.restarting = undefined));
      }
    });
    await child.ready(timeoutMs);
  }

  private output(line: string, stream: 'stdout' | 'stderr'): void {
    if (stream === 'stderr') {
      this.log.write(`[stderr] ${line}\n`);
      return;
    }
    this.log.write(`${line}\n`);
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    for (const l of this.listeners) l(record);
  }

  /** SIGKILL, wait for the exit; then (unless `restart: false`) start again and wait until it polls. */
  async kill(opts: { restart?: boolean; downMs?: number } = {}): Promise<{ killedAt: number; readyAt: number }> {
    await this.restarting;
    this.expectExit = true;
    const killedAt = Date.now();
    await this.child?.kill();
    if (opts.downMs) await sleep(opts.downMs);
    if (opts.restart !== false) await this.start();
    return { killedAt, readyAt: Date.now() };
  }

  /** Waits until a worker is running (after an unexpected exit, the restart in progress). */
  async ensureRunning(): Promise<void> {
    await this.restarting;
    if (!this.child && !this.stopped) await this.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.restarting;
    this.expectExit = true;
    await this.child?.stop();
    await new Promise<void>((r) => this.log.end(() => r()));
  }

  killSync(): void {
    this.stopped = true;
    this.child?.killSync();
  }

  unexpectedExits(): SupervisedExit[] {
    return this.exits.filter((e) => !e.expected);
  }
}

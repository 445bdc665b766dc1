import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

export interface WorkerExit {
  at: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** We killed it (SIGKILL fault or stop); false: it died on its own. */
  expected: boolean;
  stderrTail: string[];
}

type LineListener = (record: Record<string, unknown>) => void;

/**
 * Runs chaos/worker-process.ts as a child; SIGKILLs and restarts it on demand. A worker that dies
 * on its own is recorded (with its last stderr lines) and started again, as a process manager would.
 */
export class WorkerSupervisor {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private expectExit = false;
  private stopped = false;
  private listeners: LineListener[] = [];
  private readonly log: WriteStream;
  readonly exits: WorkerExit[] = [];
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

  onLine(fn: LineListener): () => void {
    this.listeners.push(fn);
    return () => (this.listeners = this.listeners.filter((l) => l !== fn));
  }

  async start(timeoutMs = 120_000): Promise<void> {
    this.stopped = false;
    this.expectExit = false;
    const script = path.join(__dirname, 'worker-process.ts');
    // node --import tsx: the pid we signal is the worker itself, not a tsx wrapper.
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: path.resolve(__dirname, '..'),
    });
    this.child = child;
    this.starts++;
    const stderrTail: string[] = [];
    let ready: () => void;
    let failed: (err: Error) => void;
    const readyP = new Promise<void>((res, rej) => {
      ready = res;
      failed = rej;
    });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      this.log.write(`${line}\n`);
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (record.msg === 'chaos-worker-ready') ready();
      for (const l of this.listeners) l(record);
    });
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      this.log.write(`[stderr] ${line}\n`);
      stderrTail.push(line);
      if (stderrTail.length > 30) stderrTail.shift();
    });
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        const expected = this.expectExit;
        this.exits.push({ at: Date.now(), code, signal, expected, stderrTail: [...stderrTail] });
        if (this.child === child) this.child = undefined;
        failed(new Error(`worker exited during start-up (${code ?? signal}): ${stderrTail.slice(-5).join(' | ')}`));
        resolve();
        if (!expected && !this.stopped) {
          this.restarting = (async () => {
            await new Promise((r) => setTimeout(r, 500));
            if (!this.stopped && !this.child) await this.start().catch(() => undefined);
          })().finally(() => (this.restarting = undefined));
        }
      });
    });
    const timer = setTimeout(() => failed(new Error('worker did not become ready')), timeoutMs);
    try {
      await readyP;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL, wait for the exit; then (unless `restart: false`) start again and wait until it polls. */
  async kill(opts: { restart?: boolean; downMs?: number } = {}): Promise<{ killedAt: number; readyAt: number }> {
    await this.restarting;
    this.expectExit = true;
    const killedAt = Date.now();
    this.child?.kill('SIGKILL');
    await this.exited;
    if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
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
    if (this.child) {
      const child = this.child;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(timer);
    }
    await new Promise<void>((r) => this.log.end(() => r()));
  }

  killSync(): void {
    this.stopped = true;
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // gone
    }
  }

  unexpectedExits(): WorkerExit[] {
    return this.exits.filter((e) => !e.expected);
  }
}

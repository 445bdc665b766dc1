/**
 * A worker child's memory, measured inside it. Workflows run in worker threads, each with its own
 * V8 heap that process.memoryUsage() does not see; the inspector reaches them from the main thread:
 * collect garbage, then read heap usage.
 */
import inspector from 'node:inspector';

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

type HeapReply = { id?: number; result?: { usedSize?: number; totalSize?: number } };

export class ThreadHeaps {
  private readonly session = new inspector.Session();
  private readonly threads = new Set<string>();
  private readonly replies = new Map<number, (m: HeapReply) => void>();
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
      const reply = JSON.parse(m.params.message) as HeapReply;
      if (reply.id !== undefined) {
        this.replies.get(reply.id)?.(reply);
        this.replies.delete(reply.id);
      }
    });
    await this.post('NodeWorker.enable', { waitForDebuggerOnStart: false });
  }

  /** The process's memory after a full GC of every thread (needs `--expose-gc`), and its CPU time. */
  async measure(): Promise<WorkerMemory> {
    const threads = await this.usage();
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage();
    const cpu = process.cpuUsage();
    return {
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
  }

  private post(method: string, params: object): Promise<void> {
    return new Promise((resolve, reject) =>
      this.session.post(method, params, (err) => (err ? reject(err) : resolve())),
    );
  }

  private ask(sessionId: string, method: string) {
    const id = ++this.nextId;
    return new Promise<HeapReply>((resolve) => {
      this.replies.set(id, resolve);
      this.post('NodeWorker.sendMessageToWorker', {
        sessionId,
        message: JSON.stringify({ id, method, params: {} }),
      }).catch(() => resolve({}));
    });
  }

  private async usage(): Promise<{ threads: number; used: number; total: number }> {
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

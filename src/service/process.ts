import type { Logger } from '../logger';

/** What a service body gets from {@link runProcess}. */
export interface Lifecycle {
  /** Aborted by the first SIGINT/SIGTERM/SIGHUP: the body winds down and returns. */
  signal: AbortSignal;
  /** Cleanup, run in reverse order of registration once the body has returned (or thrown). */
  defer(label: string, fn: () => unknown): void;
  /** Synchronous last resort when the process exits without cleanup (second signal, crash). */
  onForcedExit(fn: () => void): void;
  /** Shut down as on a signal, but exit 1 with this error (a child we depend on died). */
  fail(err: Error): void;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/**
 * One Ctrl-C arrives more than once: the terminal signals the whole process group and npm and tsx
 * forward theirs too. Repeats this close to the first are that echo, not a second request.
 */
const DUPLICATE_SIGNAL_MS = 500;

/**
 * Runs `body` as this process's service. First signal: abort, let the body return, run the
 * cleanups, exit 0. Second signal: run the forced-exit hooks and exit 1 at once. A body that fails
 * (other than by being aborted) is logged, cleaned up, and exits 1.
 */
export function runProcess(logger: Logger, body: (life: Lifecycle) => Promise<void>): void {
  const controller = new AbortController();
  let failure: Error | undefined;
  const cleanups: { label: string; fn: () => unknown }[] = [];
  const forced: (() => void)[] = [];
  const runForced = () => {
    for (const fn of forced.splice(0).reverse()) {
      try {
        fn();
      } catch {
        // exiting anyway
      }
    }
  };
  let firstSignalAt = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (firstSignalAt > 0 && Date.now() - firstSignalAt < DUPLICATE_SIGNAL_MS) return;
    if (controller.signal.aborted) {
      logger.warn(`${sig} again: exiting without cleanup`);
      runForced();
      process.exit(1);
    }
    firstSignalAt = Date.now();
    logger.info(`${sig}: shutting down (send it again to force)`);
    controller.abort(new Error(`stopped by ${sig}`));
  };
  for (const sig of SIGNALS) process.on(sig, onSignal);
  // Whatever ends the process (a crash included), children started with onForcedExit go with it.
  process.on('exit', runForced);

  const life: Lifecycle = {
    signal: controller.signal,
    defer: (label, fn) => cleanups.push({ label, fn }),
    onForcedExit: (fn) => forced.push(fn),
    fail: (err) => {
      if (controller.signal.aborted) return;
      failure = err;
      logger.error(err.message);
      logger.info('shutting down');
      controller.abort(err);
    },
  };

  void (async () => {
    let code = 0;
    try {
      await body(life);
    } catch (err) {
      if (controller.signal.aborted) {
        if (!failure) logger.info('stopped during start-up');
      } else {
        logger.error(err instanceof Error ? err.message : String(err));
        if (err instanceof Error) logger.debug('stack', { stack: err.stack });
        code = 1;
      }
    }
    for (const { label, fn } of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn(`cleanup failed: ${label}`, { error: err instanceof Error ? err.message : String(err) });
      }
    }
    if (failure) code = 1;
    logger.info('stopped', { exitCode: code });
    process.exit(code);
  })();
}

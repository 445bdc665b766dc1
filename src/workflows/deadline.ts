import { condition, sleep } from '@temporalio/workflow';

/**
 * Waits for a deadline or a change, with timers that are never cancelled: a cancellation's
 * command is issued a microtask after the code that asked for it, so its place among other
 * commands can differ between a run and its replay (a nondeterminism error). A pending timer due
 * no later than the deadline wakes the loop in time; one that fires early makes the caller
 * re-read the clock and wait again for the rest. So a deadline that moves later arms nothing.
 * Timers pending when the run ends are dropped with it.
 */
export class Deadline {
  private readonly pending: number[] = [];
  private fired = false;

  async wait(until: number | null, changed: () => boolean): Promise<void> {
    this.fired = false;
    if (until !== null && !this.pending.some((due) => due <= until)) {
      this.pending.push(until);
      void sleep(Math.max(1, until - Date.now())).then(() => {
        this.pending.splice(this.pending.indexOf(until), 1);
        this.fired = true;
      });
    }
    await condition(() => this.fired || changed());
  }
}

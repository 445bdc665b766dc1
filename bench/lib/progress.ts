/**
 * A one-line progress bar on stderr. On a terminal it redraws in place; otherwise (CI, jest, a
 * pipe) it prints a line at most every few seconds, so logs stay readable.
 */
export class Progress {
  private label = '';
  private started = Date.now();
  private lastLine = 0;
  private lastText = '';
  private readonly tty: boolean;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  /** Starts a new bar (one per scenario). */
  begin(label: string): void {
    this.end();
    this.label = label;
    this.started = Date.now();
    this.lastText = '';
    this.lastLine = 0;
    this.update(0, 'starting');
  }

  /** fraction in 0..1 of the scenario's planned work; text: what it is doing now. */
  update(fraction: number, text: string): void {
    if (!this.enabled || !this.label) return;
    const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
    const width = 24;
    const filled = Math.round(f * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const secs = Math.round((Date.now() - this.started) / 1000);
    const line = `[${this.label}] ${bar} ${String(Math.round(f * 100)).padStart(3)}% ${secs}s ${text}`;
    if (this.tty) {
      const cols = this.stream.columns || 120;
      this.stream.write(`\r${line.slice(0, cols - 1).padEnd(Math.min(cols - 1, this.lastText.length))}`);
      this.lastText = line.slice(0, cols - 1);
    } else if (Date.now() - this.lastLine >= 5000) {
      this.stream.write(line + '\n');
      this.lastLine = Date.now();
    }
  }

  /** A message that must not be overwritten by the bar. */
  note(message: string): void {
    if (!this.enabled) return;
    if (this.tty && this.lastText) this.stream.write('\n');
    this.stream.write(message + '\n');
    this.lastText = '';
  }

  end(): void {
    if (!this.enabled || !this.label) return;
    if (this.tty && this.lastText) this.stream.write('\n');
    this.label = '';
    this.lastText = '';
  }
}

/** An error as one line of a violation or a log: its class and message (a stack would not fit). */
export function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

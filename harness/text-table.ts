/**
 * A plain-text table for a terminal: columns padded to their widest cell, a dashed rule under the
 * header. `alignRight(i)`: column i is numbers, padded on the left.
 */
export function textTable(head: string[], rows: string[][], alignRight: (column: number) => boolean): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (alignRight(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A MULTI's results: throws the first command's error, or when the transaction was aborted. */
export function throwOnFailure(results: [Error | null, unknown][] | null): void {
  if (!results) throw new Error('redis transaction aborted');
  for (const [err] of results) if (err) throw err;
}

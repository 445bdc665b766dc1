import { randomBytes } from 'node:crypto';

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * Random ids (crypto, not the run's seed), so that runs never collide with each other or with
 * other people's tests on the same services; the seed only shapes what a run does.
 */
export function randomId(n = 12): string {
  return Array.from(randomBytes(n), (b) => ID_CHARS[b % ID_CHARS.length]).join('');
}

import path from 'node:path';

/** The repository root: scripts, the worker's entry points and the results folders are found from it. */
export const ROOT = path.resolve(__dirname, '..');

/**
 * What a check of a message answers, and the field checks the contracts build theirs from. Pure
 * (no Node built-ins): the client runs the checks to reject bad calls before Temporal sees them,
 * and the workflows run them again so that a poisoned signal sent around the client is dropped
 * instead of failing a workflow task.
 */
export type Check<T> = { ok: true; value: T } | { ok: false; field: string; reason: string };

/** Ids of every kind: longer ones are refused (Postgres and Redis keys hold them). */
export const ID_MAX_LENGTH = 255;

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class Invalid extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field} ${reason}`);
  }
}

export function fail(field: string, reason: string): never {
  throw new Invalid(field, reason);
}

/** Runs a check written with `fail`: its first failure is the answer. */
export function run<T>(fn: () => T): Check<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, field: err.field, reason: err.reason };
    throw err;
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function text(v: unknown, field: string, max: number = ID_MAX_LENGTH): string {
  if (typeof v !== 'string' || v.length === 0) fail(field, 'must be a non-empty string');
  if (v.length > max) fail(field, `must be at most ${max} characters`);
  // Postgres text cannot hold NUL: such a session could never be recorded.
  if (v.includes('\u0000')) fail(field, 'must not contain a NUL character');
  return v;
}

export function optionalText(v: unknown, field: string): string | undefined {
  return v === undefined || v === null ? undefined : text(v, field);
}

export function epochMs(v: unknown, field: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(field, 'must be epoch milliseconds');
  return v;
}

export function jsonSize(v: unknown, field: string): number {
  let json: string | undefined;
  try {
    json = JSON.stringify(v);
  } catch {
    fail(field, 'must be JSON-serialisable');
  }
  if (json === undefined) fail(field, 'must be JSON-serialisable');
  // UTF-8 length without Buffer (not available in workflow code).
  return new TextEncoder().encode(json).length;
}

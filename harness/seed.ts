/**
 * The rows the platform owns and a run needs before its first session: applications and
 * authentication users (tether reads them, never writes them).
 */
import type { Pool } from 'pg';
import { randomId } from './random-id';

/** Inserts an application row under a fresh pid. */
export async function seedApp(pg: Pick<Pool, 'query'>, name: string | null = null) {
  const appPid = randomId(12);
  const { rows } = await pg.query<{ id: string }>('INSERT INTO applications (pid, name) VALUES ($1, $2) RETURNING id', [
    appPid,
    name,
  ]);
  return { appPid, appId: rows[0]!.id };
}

/**
 * Inserts one user row per clientId in a single statement (username `${usernamePrefix}${clientId}`)
 * and returns them as the gateway sends them in a session.
 */
export async function seedUsers(
  pg: Pick<Pool, 'query'>,
  clientIds: readonly string[],
  opts: { appId?: string | null; usernamePrefix?: string } = {},
) {
  if (clientIds.length === 0) return [];
  const prefix = opts.usernamePrefix ?? 'user-';
  const { rows } = await pg.query<{ id: string; clientId: string; createdAt: Date; updatedAt: Date }>(
    `INSERT INTO authentication_users ("clientId", username, "appId")
       SELECT c, $2 || c, $3 FROM unnest($1::varchar[]) AS c
     RETURNING id, "clientId", "createdAt", "updatedAt"`,
    [clientIds, prefix, opts.appId ?? null],
  );
  return rows.map((r) => ({
    id: r.id,
    clientId: r.clientId,
    username: `${prefix}${r.clientId}`,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
    isOnline: false,
    lastOnline: null,
  }));
}

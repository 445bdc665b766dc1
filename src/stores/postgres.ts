import type { Pool, PoolClient } from 'pg';
import { ConnectionEventType, type Session } from '../contracts/session';

export class UnknownApplicationError extends Error {
  constructor(readonly appPid: string) {
    super(`unknown appPid ${JSON.stringify(appPid)}: no row in applications`);
    this.name = 'UnknownApplicationError';
  }
}

/**
 * SQLSTATE class 22 (data exception, e.g. 22021 for a NUL in keyId/uid/clientId, which the client's
 * checks accept): the same input fails every time, so retrying would never end.
 */
export function isDataException(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('22');
}

/** The Postgres side of the contract: sessions, connections and authentication_users rows. */
export class PgStore {
  constructor(private readonly pool: Pool) {}

  /**
   * Upserts the session row and the one row per (connectionId, event type), in one transaction so
   * that an unknown app or a crash leaves nothing half-written. Returns whether the event's socket
   * is the one the stored connect row names (a disconnect of an older socket is stale).
   */
  async recordConnectionEvent(
    session: Session,
    type: ConnectionEventType,
    at: number,
  ): Promise<{ currentSocket: boolean }> {
    return this.transaction(async (db) => {
      const app = await db.query<{ id: string }>('SELECT id FROM applications WHERE pid = $1', [session.appPid]);
      const appId = app.rows[0]?.id;
      if (!appId) throw new UnknownApplicationError(session.appPid);
      await db.query(
        `INSERT INTO sessions ("appId", "appPid", "keyId", uid, "clientId", "connectionId", "socketId", "createdAt", "updatedAt")
         VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())
         ON CONFLICT (uid, "connectionId") DO UPDATE SET "updatedAt" = now()`,
        [
          appId,
          session.appPid,
          session.keyId,
          session.uid,
          session.clientId ?? null,
          session.connectionId,
          session.socketId,
        ],
      );
      let currentSocket = true;
      if (type === ConnectionEventType.disconnect) {
        const connect = await db.query<{ socketId: string }>(
          `SELECT "socketId" FROM connections WHERE "connectionId" = $1 AND "connectionEventType" = 'connect'`,
          [session.connectionId],
        );
        currentSocket = connect.rows.length === 0 || connect.rows[0]!.socketId === session.socketId;
      }
      await db.query(
        `INSERT INTO connections ("appId", "appPid", uid, "clientId", "connectionId", "socketId", "connectionEventType", "connectionChange", "createdAt")
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::double precision / 1000) AT TIME ZONE 'UTC')
         ON CONFLICT ("connectionId", "connectionEventType") DO UPDATE SET "socketId" = EXCLUDED."socketId"`,
        [
          appId,
          session.appPid,
          session.uid,
          session.clientId ?? null,
          session.connectionId,
          session.socketId,
          type,
          type === ConnectionEventType.connect ? 1 : -1,
          at,
        ],
      );
      return { currentSocket };
    });
  }

  /**
   * The disconnect rows of many sessions closed at one moment (a lost gateway's), in one statement:
   * per session what `recordConnectionEvent` writes for a disconnect. Sessions of an unknown app
   * are left out. Returns the connectionIds recorded.
   */
  async recordDisconnects(
    sessions: Pick<Session, 'appPid' | 'keyId' | 'uid' | 'clientId' | 'connectionId' | 'socketId'>[],
    at: number,
  ): Promise<string[]> {
    if (sessions.length === 0) return [];
    const { rows } = await this.pool.query<{ connectionId: string }>(
      `WITH input AS (
         SELECT a.id AS "appId", x.*
         FROM jsonb_to_recordset($1::jsonb)
           AS x("appPid" text, "keyId" text, uid text, "clientId" text, "connectionId" text, "socketId" text)
         JOIN applications a ON a.pid = x."appPid"
       ), touched AS (
         INSERT INTO sessions ("appId", "appPid", "keyId", uid, "clientId", "connectionId", "socketId", "createdAt", "updatedAt")
         SELECT "appId", "appPid", "keyId", uid, "clientId", "connectionId", "socketId", now(), now() FROM input
         ON CONFLICT (uid, "connectionId") DO UPDATE SET "updatedAt" = now()
       )
       INSERT INTO connections ("appId", "appPid", uid, "clientId", "connectionId", "socketId", "connectionEventType", "connectionChange", "createdAt")
       SELECT "appId", "appPid", uid, "clientId", "connectionId", "socketId", $3, -1,
              to_timestamp($2::double precision / 1000) AT TIME ZONE 'UTC'
       FROM input
       ON CONFLICT ("connectionId", "connectionEventType") DO UPDATE SET "socketId" = EXCLUDED."socketId"
       RETURNING "connectionId"`,
      [
        JSON.stringify(sessions.map((s) => ({ ...s, clientId: s.clientId ?? null }))),
        at,
        ConnectionEventType.disconnect,
      ],
    );
    return rows.map((r) => r.connectionId);
  }

  /** connectionId → socketId of the disconnect rows of these connections (the closes recorded). */
  async closedSockets(connectionIds: string[]): Promise<Map<string, string>> {
    const { rows } = await this.pool.query<{ connectionId: string; socketId: string }>(
      `SELECT "connectionId", "socketId" FROM connections
        WHERE "connectionId" = ANY($1::varchar[]) AND "connectionEventType" = $2 AND "socketId" IS NOT NULL`,
      [connectionIds, ConnectionEventType.disconnect],
    );
    return new Map(rows.map((r) => [r.connectionId, r.socketId]));
  }

  /**
   * Idempotent: a retried or repeated destroy keeps the first `disconnectedAt`; a connect or
   * disconnect event since then (which bumps `updatedAt`) opens the next lifetime of the row.
   */
  async markDisconnected(connectionId: string): Promise<number> {
    const res = await this.pool.query(
      `UPDATE sessions SET "disconnectedAt" = now()
       WHERE "connectionId" = $1 AND ("disconnectedAt" IS NULL OR "disconnectedAt" < "updatedAt")`,
      [connectionId],
    );
    return res.rowCount ?? 0;
  }

  async setUserOnline(userId: string, isOnline: boolean, at: Date): Promise<void> {
    await this.pool.query(`UPDATE authentication_users SET "isOnline" = $2, "lastOnline" = $3 WHERE id = $1`, [
      userId,
      isOnline,
      at,
    ]);
  }

  /** Who a connection belonged to: its latest session row and the socket of its connect row. */
  async connectionOwner(
    connectionId: string,
  ): Promise<{ appPid: string; clientId: string | null; socketId: string | null } | undefined> {
    const { rows } = await this.pool.query<{ appPid: string; clientId: string | null; socketId: string | null }>(
      `SELECT s."appPid", s."clientId", c."socketId" FROM sessions s
       LEFT JOIN connections c ON c."connectionId" = s."connectionId" AND c."connectionEventType" = 'connect'
       WHERE s."connectionId" = $1 ORDER BY s."updatedAt" DESC LIMIT 1`,
      [connectionId],
    );
    return rows[0];
  }

  /** The latest stored session row of these connections. */
  async latestSession(connectionIds: string[]) {
    const { rows } = await this.pool.query<{
      uid: string;
      appId: string | null;
      keyId: string | null;
      clientId: string | null;
      connectionId: string;
      socketId: string | null;
    }>(
      `SELECT uid, "appId", "keyId", "clientId", "connectionId", "socketId" FROM sessions
       WHERE "connectionId" = ANY($1) ORDER BY "updatedAt" DESC LIMIT 1`,
      [connectionIds],
    );
    return rows[0];
  }

  private async transaction<T>(fn: (db: PoolClient) => Promise<T>): Promise<T> {
    const db = await this.pool.connect();
    // A checked-out client has no pool listener: a connection the server ends between two queries
    // (an outage) would emit an unhandled 'error' and kill the worker. The next query fails instead,
    // the activity retries, and the broken client is discarded, not returned to the pool.
    let broken: Error | undefined;
    const onError = (err: Error) => (broken = err);
    db.on('error', onError);
    try {
      await db.query('BEGIN');
      const result = await fn(db);
      await db.query('COMMIT');
      return result;
    } catch (err) {
      await db.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      db.off('error', onError);
      db.release(broken);
    }
  }
}

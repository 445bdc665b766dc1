import { defineSearchAttributeKey, type SearchAttributePair } from '@temporalio/common';
import type { Session } from '../session';

/**
 * Registered on the dev server by `npm start` and the tests; on a real cluster with
 * `temporal operator search-attribute create` (see README). No personal data: ids only.
 */
export const SessionStatusKey = defineSearchAttributeKey('SessionStatus', 'KEYWORD');
export const AppPidKey = defineSearchAttributeKey('AppPid', 'KEYWORD');
export const ClientIdKey = defineSearchAttributeKey('ClientId', 'KEYWORD');

export const SEARCH_ATTRIBUTES = [SessionStatusKey, AppPidKey, ClientIdKey] as const;

/** A session run's search attributes: set at start by the client, carried by continue-as-new. */
export function sessionSearchAttributes(session: Session, status: string): SearchAttributePair[] {
  return [
    { key: SessionStatusKey, value: status },
    { key: AppPidKey, value: session.appPid },
    ...(session.clientId ? [{ key: ClientIdKey, value: session.clientId }] : []),
  ];
}

/** Who owns the connectionId (the client's ownership check reads it without a worker). */
export function sessionMemo(session: Session): { uid: string; appPid: string } {
  return { uid: session.uid, appPid: session.appPid };
}

import { defineSearchAttributeKey, type SearchAttributePair, type SearchAttributeType } from '@temporalio/common';
import type { Session } from './session';

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

/** What `defineSearchAttributeKey` returns (the SDK does not export the type). */
export interface AttributeKey {
  name: string;
  type: SearchAttributeType;
}

const CLI_TYPES: Record<SearchAttributeType, string> = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
};

/**
 * `Name=Type` as the Temporal CLI's `--search-attribute` and `search-attribute create --type` spell
 * them: how the dev server registers the keys, and the fix the worker prints when they are missing.
 */
export function cliSearchAttributes(keys: readonly AttributeKey[]) {
  return keys.map((key) => ({ name: key.name, type: CLI_TYPES[key.type] }));
}

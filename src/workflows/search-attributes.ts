import { defineSearchAttributeKey } from '@temporalio/common';

/**
 * Registered on the dev server by `npm start` and the tests; on a real cluster with
 * `temporal operator search-attribute create` (see README). No personal data: ids only.
 */
export const SessionStatusKey = defineSearchAttributeKey('SessionStatus', 'KEYWORD');
export const AppPidKey = defineSearchAttributeKey('AppPid', 'KEYWORD');
export const ClientIdKey = defineSearchAttributeKey('ClientId', 'KEYWORD');

export const SEARCH_ATTRIBUTES = [SessionStatusKey, AppPidKey, ClientIdKey] as const;

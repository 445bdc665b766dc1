#!/usr/bin/env node
/**
 * `npx tether sessions list|describe|invalidate|stats`: the operator's view from a terminal, on top
 * of the session client and Temporal visibility (the same search attributes the Web UI filters on).
 */
import { Client, Connection } from '@temporalio/client';
import { SessionClient, SessionStatus } from './client';
import { ConfigError, loadConfig } from './config';
import { SessionStatusKey } from './workflows/search-attributes';

const USAGE = `usage: tether sessions list [--app PID] [--client ID] [--status connected|disconnected|destroyed] [--limit N]
       tether sessions describe CONNECTION_ID
       tether sessions invalidate CONNECTION_ID --reason TEXT
       tether sessions stats [--app PID]`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Visibility query from flags; values are quoted, so no flag can widen the query. */
export function visibilityQuery(args: string[]): string {
  const quote = (v: string) => `"${v.replace(/["\\]/g, '')}"`;
  const parts = ['WorkflowType = "sessionWorkflow"'];
  const app = flag(args, 'app');
  const client = flag(args, 'client');
  const status = flag(args, 'status');
  if (app) parts.push(`AppPid = ${quote(app)}`);
  if (client) parts.push(`ClientId = ${quote(client)}`);
  if (status) parts.push(`SessionStatus = ${quote(status)}`);
  return parts.join(' AND ');
}

async function main(argv: string[]): Promise<number> {
  const [group, command, ...args] = argv;
  if (group !== 'sessions' || !command) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig(process.env);
  const connection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const sessions = new SessionClient(client, {
    taskQueue: config.temporal.taskQueue,
    idleTimeoutMs: config.idleTimeoutMs,
  });
  try {
    switch (command) {
      case 'list': {
        const limit = Number(flag(args, 'limit') ?? 50);
        let n = 0;
        for await (const wf of client.workflow.list({ query: visibilityQuery(args) })) {
          const status = wf.typedSearchAttributes.get(SessionStatusKey);
          console.log([wf.workflowId, wf.status.name, status ?? '', wf.startTime.toISOString()].join('\t'));
          if (++n >= limit) break;
        }
        return 0;
      }
      case 'describe': {
        const state = await sessions.describe(args[0] ?? '');
        console.log(state ? JSON.stringify(state, null, 2) : 'no such session');
        return state ? 0 : 1;
      }
      case 'invalidate': {
        const reason = flag(args, 'reason') ?? 'operator';
        const done = await sessions.invalidate(args[0] ?? '', reason);
        console.log(done ? 'invalidated' : 'no running session');
        return done ? 0 : 1;
      }
      case 'stats': {
        const base = visibilityQuery(args);
        for (const status of Object.values(SessionStatus)) {
          const { count } = await client.workflow.count(`${base} AND SessionStatus = "${status}"`);
          console.log(`${status}\t${count}`);
        }
        return 0;
      }
      default:
        console.error(USAGE);
        return 2;
    }
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof ConfigError || err instanceof Error ? err.message : String(err));
      process.exit(1);
    },
  );
}

#!/usr/bin/env node
/**
 * `npx tether sessions list|describe|invalidate|stats`: the operator's view from a terminal, on top
 * of the session client and Temporal visibility (the same search attributes the Web UI filters on).
 * It connects exactly as the worker does (src/temporal-connection.ts: address, namespace, TLS, mTLS).
 * Exit codes: 0 done, 1 no such session or a failure, 2 a usage error (named on stderr).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { SessionClient, SessionStatus } from './client';
import { formatState, relativeToNow, stateWithIsoTimes } from './cli/format';
import { ConfigError, loadConfig } from './config';
import { temporalConnectionOptions } from './temporal-connection';
import { SessionStatusKey } from './contracts/search-attributes';

type Options = NonNullable<ParseArgsConfig['options']>;

interface Command {
  usage: string;
  summary: string;
  options: Options;
  /** Names of the positional arguments, all required. */
  positionals: string[];
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const satisfies Options;
const FILTERS = { app: { type: 'string' }, client: { type: 'string' } } as const satisfies Options;
const STATUSES = Object.values(SessionStatus) as string[];

const COMMANDS = {
  list: {
    usage: 'tether sessions list [--app PID] [--client ID] [--status connected|disconnected|destroyed] [--limit N]',
    summary: 'Session workflows, newest first: workflow id, execution status, session status, started at.',
    options: { ...HELP, ...FILTERS, status: { type: 'string' }, limit: { type: 'string' } },
    positionals: [],
  },
  describe: {
    usage: 'tether sessions describe CONNECTION_ID [--json]',
    summary:
      "A session's state query: status with its soft and hard destroy deadlines, times in ISO-8601 UTC.\n" +
      '--json prints the state as JSON, its times as ISO strings.',
    options: { ...HELP, json: { type: 'boolean' } },
    positionals: ['CONNECTION_ID'],
  },
  invalidate: {
    usage: 'tether sessions invalidate CONNECTION_ID [--reason TEXT]',
    summary: 'Destroys a running session now (reason default: operator).',
    options: { ...HELP, reason: { type: 'string' } },
    positionals: ['CONNECTION_ID'],
  },
  stats: {
    usage: 'tether sessions stats [--app PID] [--client ID]',
    summary: 'Session workflows counted by session status.',
    options: { ...HELP, ...FILTERS },
    positionals: [],
  },
} satisfies Record<string, Command>;
type CommandName = keyof typeof COMMANDS;

export const USAGE = [
  'usage: tether sessions <command> [flags]   (tether sessions <command> --help)',
  '',
  ...Object.values(COMMANDS).map((c) => `  ${c.usage}`),
  '',
  'Temporal connection and namespace from the environment, as the worker: TEMPORAL_ADDRESS,',
  'TEMPORAL_NAMESPACE, TEMPORAL_TLS, TEMPORAL_TLS_CA_PATH, TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH,',
  'TEMPORAL_TLS_SERVER_NAME (see .env.example).',
].join('\n');

/** A mistake in the command line: printed with a pointer to --help, exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: CommandName,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

function isCommand(name: string | undefined): name is CommandName {
  return name !== undefined && Object.hasOwn(COMMANDS, name);
}

/** parseArgs' errors, reworded to name the flag (`unknown flag --x`, `--app needs a value`). */
function usageError(err: unknown, command: CommandName): UsageError {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const flag = /'(?:-\w, )?(--?[\w-]+)/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) return new UsageError(`unknown flag ${flag}`, command);
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag) {
    const takesNone = /does not take an argument/.test(message);
    return new UsageError(takesNone ? `${flag} takes no value` : `${flag} needs a value`, command);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /argument '([^']*)'/.exec(message)?.[1];
    return new UsageError(`unexpected argument ${arg ?? ''}`.trim(), command);
  }
  return new UsageError(message, command);
}

export interface Parsed {
  command: CommandName;
  help: boolean;
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
}

/** The command line after `tether`; throws {@link UsageError} for anything it does not know. */
export function parseCommandLine(argv: string[]): Parsed | 'help' {
  const [group, name, ...rest] = argv;
  if (group === '--help' || group === '-h' || group === 'help' || (group === 'sessions' && !name)) return 'help';
  if (group === 'sessions' && (name === '--help' || name === '-h')) return 'help';
  if (group !== 'sessions') throw new UsageError(group ? `unknown command ${group}` : 'no command');
  if (!isCommand(name)) throw new UsageError(`unknown command sessions ${name}`);
  const spec: Command = COMMANDS[name];
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: rest, options: spec.options, strict: true, allowPositionals: true });
  } catch (err) {
    throw usageError(err, name);
  }
  const values = parsed.values as Parsed['values'];
  const help = values.help === true;
  if (!help) {
    const missing = spec.positionals.slice(parsed.positionals.length);
    if (missing.length > 0) throw new UsageError(`missing ${missing.join(' ')}`, name);
    const extra = parsed.positionals.slice(spec.positionals.length);
    if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}`, name);
    for (const [key, value] of Object.entries(values)) {
      if (value === '') throw new UsageError(`--${key} needs a value`, name);
    }
    if (typeof values.status === 'string' && !STATUSES.includes(values.status)) {
      throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`, name);
    }
    if (typeof values.limit === 'string' && !/^[1-9]\d*$/.test(values.limit)) {
      throw new UsageError('--limit must be a whole number >= 1', name);
    }
  }
  return { command: name, help, positionals: parsed.positionals, values };
}

/** Visibility query from the filters; values are quoted, so no flag can widen the query. */
export function visibilityQuery(filters: { app?: string; client?: string; status?: string }): string {
  const quote = (v: string) => `"${v.replace(/["\\]/g, '')}"`;
  const parts = ['WorkflowType = "sessionWorkflow"'];
  if (filters.app) parts.push(`AppPid = ${quote(filters.app)}`);
  if (filters.client) parts.push(`ClientId = ${quote(filters.client)}`);
  if (filters.status) parts.push(statusClause(filters.status));
  return parts.join(' AND ');
}

/** A destroyed session is a closed run; `SessionStatus` tells the others apart while they run. */
function statusClause(status: string): string {
  if (status === SessionStatus.destroyed) return 'ExecutionStatus != "Running"';
  return `ExecutionStatus = "Running" AND SessionStatus = "${status.replace(/["\\]/g, '')}"`;
}

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  env: Record<string, string | undefined>;
  now: () => number;
}

const processIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
  now: () => Date.now(),
};

/** The gatewayId the CLI's session client identifies itself with (it holds no sockets). */
export const CLI_GATEWAY_ID = 'tether-cli';

const str = (v: string | boolean | undefined) => (typeof v === 'string' ? v : undefined);

/** Runs one command line; resolves to the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let parsed: Parsed | 'help';
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    const where = err.command ? `tether sessions ${err.command}` : 'tether';
    io.err(`${where}: ${err.message}`);
    io.err(err.command ? `usage: ${COMMANDS[err.command].usage}   (--help for more)` : USAGE);
    return 2;
  }
  if (parsed === 'help') {
    io.out(USAGE);
    return 0;
  }
  const { command, values, positionals } = parsed;
  if (parsed.help) {
    io.out(`usage: ${COMMANDS[command].usage}\n\n${COMMANDS[command].summary}`);
    return 0;
  }

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(io.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err(`tether: ${err.message}`);
    return 1;
  }
  const options = await temporalConnectionOptions(config);
  const connection = await Connection.connect(options.connection);
  const client = new Client({ connection, namespace: options.namespace });
  // Only describe and invalidate go through the session client; list and stats are visibility alone.
  // The CLI holds no sockets: no timer, and its lease (if any was taken) released by close().
  let sessionClient: SessionClient | undefined;
  const sessions = () =>
    (sessionClient ??= new SessionClient(client, {
      taskQueue: config.temporal.taskQueue,
      idleTimeoutMs: config.idleTimeoutMs,
      gatewayId: CLI_GATEWAY_ID,
      autoTick: false,
    }));
  const filters = { app: str(values.app), client: str(values.client), status: str(values.status) };
  try {
    switch (command) {
      case 'list': {
        const limit = Number(str(values.limit) ?? 50);
        let n = 0;
        for await (const wf of client.workflow.list({ query: visibilityQuery(filters) })) {
          if (n === 0) io.out(['WORKFLOW ID', 'EXECUTION', 'SESSION', 'STARTED AT'].join('\t'));
          const status = wf.typedSearchAttributes.get(SessionStatusKey);
          const started = wf.startTime.getTime();
          io.out(
            [
              wf.workflowId,
              wf.status.name,
              status ?? '-',
              `${wf.startTime.toISOString()} (${relativeToNow(started, io.now())})`,
            ].join('\t'),
          );
          if (++n >= limit) break;
        }
        if (n === 0) io.err('no sessions match');
        return 0;
      }
      case 'describe': {
        const state = await sessions().describe(positionals[0]!);
        if (!state) {
          io.err('no such session');
          return 1;
        }
        const record = state as unknown as Record<string, unknown>;
        io.out(values.json ? JSON.stringify(stateWithIsoTimes(record), null, 2) : formatState(record, io.now()));
        return 0;
      }
      case 'invalidate': {
        const done = await sessions().invalidate(positionals[0]!, str(values.reason) ?? 'operator');
        if (done) io.out('invalidated');
        else io.err('no running session');
        return done ? 0 : 1;
      }
      case 'stats': {
        const base = visibilityQuery(filters);
        for (const status of STATUSES) {
          const { count } = await client.workflow.count(`${base} AND ${statusClause(status)}`);
          io.out(`${status}\t${count}`);
        }
        return 0;
      }
      default: {
        const unknown: never = command;
        throw new Error(`unhandled command ${String(unknown)}`);
      }
    }
  } finally {
    await sessionClient?.close();
    await connection.close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`tether: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

import type { LogLevel } from './config';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = {
  debug: 10,
  info: 20,
  warn: 30,
  error: 40,
};

/**
 * One JSON object per line (connectionId/appPid/workflowId travel as fields); `pretty` gives the
 * readable console format the original service used on LOCALHOST.
 */
export function createLogger(
  opts: { level: LogLevel; pretty?: boolean; write?: (line: string) => void },
  base: LogFields = {},
): Logger {
  const write = opts.write ?? ((line: string) => process.stdout.write(line + '\n'));
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[level] < RANK[opts.level]) return;
    const record = {
      time: new Date().toISOString(),
      level,
      msg,
      ...base,
      ...fields,
    };
    if (opts.pretty) {
      const rest = Object.entries({ ...base, ...fields })
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${record.time} ${level.toUpperCase().padEnd(5)} ${msg}${rest ? ' ' + rest : ''}`);
    } else {
      write(
        JSON.stringify(record, (_k, v: unknown) => (v instanceof Error ? { name: v.name, message: v.message } : v)),
      );
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

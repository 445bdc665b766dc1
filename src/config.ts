/**
 * The one place that reads the environment. Built once at start-up and passed down; a bad value
 * stops start-up with an error naming the variable (upstream turned these into `EX 0`, `NaN`
 * routing keys and a silently dead cron).
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string | undefined,
    reason: string,
  ) {
    super(`${variable}=${JSON.stringify(value ?? '')} is invalid: ${reason}`);
    this.name = 'ConfigError';
  }
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  db: {
    host: string;
    port: number;
    name: string;
    user: string;
    password: string;
    maxConnections: number;
    idleTimeoutMs: number;
    tls: boolean;
    /** Behind a pooler (RDS proxy, pgbouncer): no session-level features. */
    proxyEnabled: boolean;
  };
  redis: { host: string; port: number; tls: boolean };
  rabbitmq: { url: string; queueCount: number };
  /** WS_IDLE_TIMEOUT_MS: the gateway's idle period; every session timing derives from it. */
  idleTimeoutMs: number;
  cronScheduleMins: number;
  localhost: boolean;
  logLevel: LogLevel;
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    tls:
      | false
      | {
          serverNameOverride?: string;
          serverRootCACertPath?: string;
          clientCertPath?: string;
          clientKeyPath?: string;
        };
    /** Web UI port of the dev server that `npm start` runs when nothing answers at a local address. */
    uiPort: number;
  };
  metricsPort: number;
}

type Env = Record<string, string | undefined>;

function str(env: Env, name: string, fallback: string): string {
  const v = env[name];
  if (v === undefined || v === '') return fallback;
  return v;
}

function int(
  env: Env,
  name: string,
  fallback: number,
  { min = 1, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, raw, 'expected a whole number');
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new ConfigError(name, raw, `expected a whole number ${range}`);
  }
  return n;
}

const PORT = { min: 1, max: 65535 };

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new ConfigError(name, raw, 'expected true or false');
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = raw.trim().toLowerCase() as T;
  if (!allowed.includes(v)) throw new ConfigError(name, raw, `expected one of ${allowed.join(', ')}`);
  return v;
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const raw = str(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, raw, 'expected a URL');
  }
  if (!protocols.includes(parsed.protocol)) throw new ConfigError(name, raw, `expected ${protocols.join(' or ')} URL`);
  return raw;
}

function hostPort(env: Env, name: string, fallback: string): string {
  const raw = str(env, name, fallback);
  const m = /^[^\s:/]+:(\d{1,5})$/.exec(raw);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) throw new ConfigError(name, raw, 'expected host:port');
  return raw;
}

/** A client certificate needs its key and vice versa; either alone is a half-configured mTLS. */
function certPair(env: Env): { cert?: string; key?: string } {
  const cert = env.TEMPORAL_TLS_CERT_PATH || undefined;
  const key = env.TEMPORAL_TLS_KEY_PATH || undefined;
  if (cert && !key) throw new ConfigError('TEMPORAL_TLS_KEY_PATH', undefined, 'required with TEMPORAL_TLS_CERT_PATH');
  if (key && !cert) throw new ConfigError('TEMPORAL_TLS_CERT_PATH', undefined, 'required with TEMPORAL_TLS_KEY_PATH');
  return { cert, key };
}

export function loadConfig(env: Env): Config {
  const { cert, key } = certPair(env);
  const ca = env.TEMPORAL_TLS_CA_PATH || undefined;
  // TLS is on when asked for, or implied by a certificate; TEMPORAL_TLS=false turns it off anyway.
  const temporalTls = bool(env, 'TEMPORAL_TLS', Boolean(cert || ca));
  return {
    db: {
      host: str(env, 'DB_HOST', '127.0.0.1'),
      port: int(env, 'DB_PORT', 5432, PORT),
      name: str(env, 'DB_NAME', 'tether'),
      user: str(env, 'DB_USER', 'tether'),
      password: str(env, 'DB_PASSWORD', 'tether'),
      maxConnections: int(env, 'DB_MAX_CONNECTIONS', 10),
      idleTimeoutMs: int(env, 'DB_IDLE_TIMEOUT_MS', 30000),
      tls: !bool(env, 'DB_TLS_DISABLED', true),
      proxyEnabled: bool(env, 'DB_PROXY_ENABLED', false),
    },
    redis: {
      host: str(env, 'REDIS_HOST', '127.0.0.1'),
      port: int(env, 'REDIS_PORT', 6379, PORT),
      tls: !bool(env, 'REDIS_TLS_DISABLED', true),
    },
    rabbitmq: {
      url: url(env, 'RABBIT_MQ_CONNECTION_STRING', 'amqp://guest:guest@127.0.0.1:5672', ['amqp:', 'amqps:']),
      queueCount: int(env, 'RABBIT_MQ_QUEUE_COUNT', 20),
    },
    idleTimeoutMs: int(env, 'WS_IDLE_TIMEOUT_MS', 30000, { min: 1000 }),
    cronScheduleMins: int(env, 'CRON_SCHEDULE_MINS', 5),
    localhost: bool(env, 'LOCALHOST', false),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    temporal: {
      address: hostPort(env, 'TEMPORAL_ADDRESS', '127.0.0.1:7233'),
      namespace: str(env, 'TEMPORAL_NAMESPACE', 'default'),
      taskQueue: str(env, 'TEMPORAL_TASK_QUEUE', 'tether-sessions'),
      tls: temporalTls
        ? {
            serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME || undefined,
            serverRootCACertPath: ca,
            clientCertPath: cert,
            clientKeyPath: key,
          }
        : false,
      uiPort: int(env, 'TEMPORAL_UI_PORT', 8233, PORT),
    },
    // The runtime's Prometheus exporter listens on METRICS_PORT + 1 (src/service/runtime.ts).
    metricsPort: int(env, 'METRICS_PORT', 9464, { min: 1, max: 65534 }),
  };
}

/** Entry points: the config of this process's environment, or exit 1 with the line naming the variable. */
export function configFromEnvOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`tether: ${err.message}\n`);
    process.exit(1);
  }
}

import { ConfigError, configFromEnvOrExit, loadConfig } from '../../src/config';

/**
 * loadConfig, pure: every default, every variable name, every message written out exactly, both
 * sides of every bound; this file is the one `npm run mutate` runs against src/config.ts.
 * test/bad-config-start.test.ts starts `npm start` with a bad value, test/env-example.test.ts
 * holds .env.example and docker-compose.yml to the variables read here.
 */

function refused(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}
const message = (env: Record<string, string>) => refused(env).message;

const DEFAULTS = {
  db: {
    host: '127.0.0.1',
    port: 5432,
    name: 'tether',
    user: 'tether',
    password: 'tether',
    maxConnections: 10,
    idleTimeoutMs: 30000,
    tls: false,
    proxyEnabled: false,
  },
  redis: { host: '127.0.0.1', port: 6379, tls: false },
  rabbitmq: { url: 'amqp://guest:guest@127.0.0.1:5672', queueCount: 20 },
  idleTimeoutMs: 30000,
  cronScheduleMins: 5,
  localhost: false,
  logLevel: 'info',
  temporal: { address: '127.0.0.1:7233', namespace: 'default', taskQueue: 'tether-sessions', tls: false, uiPort: 8233 },
  metricsPort: 9464,
};

describe('ConfigError', () => {
  it('names the variable and the value', () => {
    const e = new ConfigError('X_Y', 'abc', 'expected a whole number');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('ConfigError');
    expect(e.variable).toBe('X_Y');
    expect(e.value).toBe('abc');
    expect(e.message).toBe('X_Y="abc" is invalid: expected a whole number');
    expect(new ConfigError('X', undefined, 'r').message).toBe('X="" is invalid: r');
  });
});

describe('loadConfig (unit)', () => {
  it('defaults', () => {
    expect(loadConfig({})).toStrictEqual(DEFAULTS);
  });

  it('an empty variable is unset', () => {
    const empty = Object.fromEntries(
      [
        'DB_HOST',
        'DB_PORT',
        'DB_NAME',
        'DB_USER',
        'DB_PASSWORD',
        'DB_MAX_CONNECTIONS',
        'DB_IDLE_TIMEOUT_MS',
        'DB_TLS_DISABLED',
        'DB_PROXY_ENABLED',
        'REDIS_HOST',
        'REDIS_PORT',
        'REDIS_TLS_DISABLED',
        'RABBIT_MQ_CONNECTION_STRING',
        'RABBIT_MQ_QUEUE_COUNT',
        'WS_IDLE_TIMEOUT_MS',
        'CRON_SCHEDULE_MINS',
        'LOCALHOST',
        'LOG_LEVEL',
        'TEMPORAL_ADDRESS',
        'TEMPORAL_NAMESPACE',
        'TEMPORAL_TASK_QUEUE',
        'TEMPORAL_TLS',
        'TEMPORAL_TLS_SERVER_NAME',
        'TEMPORAL_TLS_CA_PATH',
        'TEMPORAL_TLS_CERT_PATH',
        'TEMPORAL_TLS_KEY_PATH',
        'TEMPORAL_UI_PORT',
        'METRICS_PORT',
      ].map((k) => [k, '']),
    );
    expect(loadConfig(empty)).toStrictEqual(DEFAULTS);
  });

  it.each([
    ['DB_HOST', 'h', (c: ReturnType<typeof loadConfig>) => c.db.host],
    ['DB_NAME', 'n', (c: ReturnType<typeof loadConfig>) => c.db.name],
    ['DB_USER', 'u', (c: ReturnType<typeof loadConfig>) => c.db.user],
    ['DB_PASSWORD', 'p', (c: ReturnType<typeof loadConfig>) => c.db.password],
    ['REDIS_HOST', 'r', (c: ReturnType<typeof loadConfig>) => c.redis.host],
    ['TEMPORAL_NAMESPACE', 'ns', (c: ReturnType<typeof loadConfig>) => c.temporal.namespace],
    ['TEMPORAL_TASK_QUEUE', 'tq', (c: ReturnType<typeof loadConfig>) => c.temporal.taskQueue],
    ['DB_PORT', '6432', (c: ReturnType<typeof loadConfig>) => c.db.port],
    ['DB_MAX_CONNECTIONS', '3', (c: ReturnType<typeof loadConfig>) => c.db.maxConnections],
    ['DB_IDLE_TIMEOUT_MS', '7', (c: ReturnType<typeof loadConfig>) => c.db.idleTimeoutMs],
    ['REDIS_PORT', '6380', (c: ReturnType<typeof loadConfig>) => c.redis.port],
    ['RABBIT_MQ_QUEUE_COUNT', '1', (c: ReturnType<typeof loadConfig>) => c.rabbitmq.queueCount],
    ['WS_IDLE_TIMEOUT_MS', '1000', (c: ReturnType<typeof loadConfig>) => c.idleTimeoutMs],
    ['CRON_SCHEDULE_MINS', '1', (c: ReturnType<typeof loadConfig>) => c.cronScheduleMins],
    ['TEMPORAL_UI_PORT', '65535', (c: ReturnType<typeof loadConfig>) => c.temporal.uiPort],
    ['METRICS_PORT', '65534', (c: ReturnType<typeof loadConfig>) => c.metricsPort],
  ])('%s=%s is read', (name, value, get) => {
    const got = get(loadConfig({ [name]: value }));
    expect(got).toBe(typeof got === 'number' ? Number(value) : value);
  });

  describe('whole numbers', () => {
    it.each(['abc', '1.5', '12abc', 'x5', '5x', '1e3', '0x10', '+5', ' ', '--5', '- 5'])(
      '%j is not a whole number',
      (v) => {
        expect(message({ DB_MAX_CONNECTIONS: v })).toBe(
          `DB_MAX_CONNECTIONS=${JSON.stringify(v)} is invalid: expected a whole number`,
        );
      },
    );
    it('below the minimum: a whole number >= min (a minus sign is a number, then out of range)', () => {
      expect(message({ DB_MAX_CONNECTIONS: '0' })).toBe(
        'DB_MAX_CONNECTIONS="0" is invalid: expected a whole number >= 1',
      );
      expect(message({ DB_MAX_CONNECTIONS: '-5' })).toBe(
        'DB_MAX_CONNECTIONS="-5" is invalid: expected a whole number >= 1',
      );
      expect(message({ WS_IDLE_TIMEOUT_MS: '999' })).toBe(
        'WS_IDLE_TIMEOUT_MS="999" is invalid: expected a whole number >= 1000',
      );
    });
    it('beyond the safe integers', () => {
      expect(message({ DB_IDLE_TIMEOUT_MS: '9007199254740992' })).toBe(
        'DB_IDLE_TIMEOUT_MS="9007199254740992" is invalid: expected a whole number >= 1',
      );
      expect(loadConfig({ DB_IDLE_TIMEOUT_MS: '9007199254740991' }).db.idleTimeoutMs).toBe(Number.MAX_SAFE_INTEGER);
    });
    it('ports: 1 to 65535 (METRICS_PORT to 65534: the runtime exporter takes the next port)', () => {
      for (const name of ['DB_PORT', 'REDIS_PORT', 'TEMPORAL_UI_PORT']) {
        expect(message({ [name]: '0' })).toBe(`${name}="0" is invalid: expected a whole number from 1 to 65535`);
        expect(message({ [name]: '65536' })).toBe(
          `${name}="65536" is invalid: expected a whole number from 1 to 65535`,
        );
        expect(() => loadConfig({ [name]: '1' })).not.toThrow();
        expect(() => loadConfig({ [name]: '65535' })).not.toThrow();
      }
      expect(message({ METRICS_PORT: '65535' })).toBe(
        'METRICS_PORT="65535" is invalid: expected a whole number from 1 to 65534',
      );
      expect(message({ METRICS_PORT: '0' })).toBe(
        'METRICS_PORT="0" is invalid: expected a whole number from 1 to 65534',
      );
      expect(loadConfig({ METRICS_PORT: '1' }).metricsPort).toBe(1);
    });
    it('surrounding whitespace is trimmed', () => {
      expect(loadConfig({ DB_PORT: ' 6432\t' }).db.port).toBe(6432);
      expect(loadConfig({ RABBIT_MQ_QUEUE_COUNT: '  40 ' }).rabbitmq.queueCount).toBe(40);
    });
    it.each([
      'DB_PORT',
      'DB_MAX_CONNECTIONS',
      'DB_IDLE_TIMEOUT_MS',
      'REDIS_PORT',
      'RABBIT_MQ_QUEUE_COUNT',
      'WS_IDLE_TIMEOUT_MS',
      'CRON_SCHEDULE_MINS',
      'TEMPORAL_UI_PORT',
      'METRICS_PORT',
    ])('%s is checked', (name) => {
      expect(refused({ [name]: 'abc' }).variable).toBe(name);
      expect(refused({ [name]: '0' }).variable).toBe(name);
    });
  });

  describe('booleans', () => {
    const reads = {
      DB_TLS_DISABLED: (e: Record<string, string>) => !loadConfig(e).db.tls,
      DB_PROXY_ENABLED: (e: Record<string, string>) => loadConfig(e).db.proxyEnabled,
      REDIS_TLS_DISABLED: (e: Record<string, string>) => !loadConfig(e).redis.tls,
      LOCALHOST: (e: Record<string, string>) => loadConfig(e).localhost,
      TEMPORAL_TLS: (e: Record<string, string>) => loadConfig(e).temporal.tls !== false,
    };
    it.each(Object.keys(reads))('%s: true, 1, yes / false, 0, no, trimmed, any case', (name) => {
      const get = reads[name as keyof typeof reads];
      for (const v of ['true', 'TRUE', ' True ', '1', 'yes', 'YES']) expect([v, get({ [name]: v })]).toEqual([v, true]);
      for (const v of ['false', 'FALSE', ' False ', '0', 'no', 'NO'])
        expect([v, get({ [name]: v })]).toEqual([v, false]);
      for (const v of ['on', 'off', '2', 'y', 'n', 'maybe']) {
        expect(message({ [name]: v })).toBe(`${name}=${JSON.stringify(v)} is invalid: expected true or false`);
      }
    });
  });

  it('LOG_LEVEL: debug, info, warn or error, trimmed, any case', () => {
    for (const l of ['debug', 'info', 'warn', 'error']) expect(loadConfig({ LOG_LEVEL: l }).logLevel).toBe(l);
    expect(loadConfig({ LOG_LEVEL: ' WARN ' }).logLevel).toBe('warn');
    expect(message({ LOG_LEVEL: 'verbose' })).toBe(
      'LOG_LEVEL="verbose" is invalid: expected one of debug, info, warn, error',
    );
  });

  it('RABBIT_MQ_CONNECTION_STRING: an amqp or amqps URL, kept as written', () => {
    expect(loadConfig({ RABBIT_MQ_CONNECTION_STRING: 'amqps://u:p@mq:5671/v' }).rabbitmq.url).toBe(
      'amqps://u:p@mq:5671/v',
    );
    expect(loadConfig({ RABBIT_MQ_CONNECTION_STRING: 'amqp://mq' }).rabbitmq.url).toBe('amqp://mq');
    expect(message({ RABBIT_MQ_CONNECTION_STRING: 'not a url' })).toBe(
      'RABBIT_MQ_CONNECTION_STRING="not a url" is invalid: expected a URL',
    );
    expect(message({ RABBIT_MQ_CONNECTION_STRING: 'http://mq:5672' })).toBe(
      'RABBIT_MQ_CONNECTION_STRING="http://mq:5672" is invalid: expected amqp: or amqps: URL',
    );
  });

  describe('TEMPORAL_ADDRESS: host:port', () => {
    it.each(['t:1', 't:65535', 'a.b-c_d:7233', '10.0.0.5:443', 't:00001'])('takes %s', (v) => {
      expect(loadConfig({ TEMPORAL_ADDRESS: v }).temporal.address).toBe(v);
    });
    it.each([
      't',
      't:',
      ':7233',
      't:0',
      't:65536',
      't:000001',
      't:abc',
      't:1x',
      'x t:1',
      't :1',
      'a/b:1',
      'a:b:1',
      'http://t:7233',
      ' t:1',
      't:1 ',
    ])('refuses %j', (v) => {
      expect(message({ TEMPORAL_ADDRESS: v })).toBe(
        `TEMPORAL_ADDRESS=${JSON.stringify(v)} is invalid: expected host:port`,
      );
    });
  });

  describe('Temporal TLS', () => {
    it('off by default; on with TEMPORAL_TLS=true alone (system CAs, no client certificate)', () => {
      expect(loadConfig({}).temporal.tls).toBe(false);
      expect(loadConfig({ TEMPORAL_TLS: 'true' }).temporal.tls).toStrictEqual({
        serverNameOverride: undefined,
        serverRootCACertPath: undefined,
        clientCertPath: undefined,
        clientKeyPath: undefined,
      });
    });
    it('a certificate pair turns it on', () => {
      expect(
        loadConfig({ TEMPORAL_TLS_CERT_PATH: '/c.pem', TEMPORAL_TLS_KEY_PATH: '/c.key' }).temporal.tls,
      ).toStrictEqual({
        serverNameOverride: undefined,
        serverRootCACertPath: undefined,
        clientCertPath: '/c.pem',
        clientKeyPath: '/c.key',
      });
    });
    it('a CA alone turns it on', () => {
      expect(loadConfig({ TEMPORAL_TLS_CA_PATH: '/ca.pem' }).temporal.tls).toStrictEqual({
        serverNameOverride: undefined,
        serverRootCACertPath: '/ca.pem',
        clientCertPath: undefined,
        clientKeyPath: undefined,
      });
    });
    it('the server name is passed on; empty values are unset', () => {
      expect(
        loadConfig({ TEMPORAL_TLS: 'yes', TEMPORAL_TLS_SERVER_NAME: 'x.tmprl.cloud', TEMPORAL_TLS_CA_PATH: '' })
          .temporal.tls,
      ).toStrictEqual({
        serverNameOverride: 'x.tmprl.cloud',
        serverRootCACertPath: undefined,
        clientCertPath: undefined,
        clientKeyPath: undefined,
      });
      expect(
        loadConfig({ TEMPORAL_TLS: 'yes', TEMPORAL_TLS_SERVER_NAME: '', TEMPORAL_TLS_CERT_PATH: '' }).temporal.tls,
      ).toStrictEqual({
        serverNameOverride: undefined,
        serverRootCACertPath: undefined,
        clientCertPath: undefined,
        clientKeyPath: undefined,
      });
    });
    it('TEMPORAL_TLS=false wins over a certificate or a CA', () => {
      const pair = { TEMPORAL_TLS_CERT_PATH: '/c.pem', TEMPORAL_TLS_KEY_PATH: '/c.key' };
      expect(loadConfig({ ...pair, TEMPORAL_TLS: 'false' }).temporal.tls).toBe(false);
      expect(loadConfig({ TEMPORAL_TLS_CA_PATH: '/ca', TEMPORAL_TLS: '0' }).temporal.tls).toBe(false);
    });
    it('a certificate needs its key and the key its certificate', () => {
      expect(message({ TEMPORAL_TLS_CERT_PATH: '/c.pem' })).toBe(
        'TEMPORAL_TLS_KEY_PATH="" is invalid: required with TEMPORAL_TLS_CERT_PATH',
      );
      expect(message({ TEMPORAL_TLS_KEY_PATH: '/c.key', TEMPORAL_TLS_CERT_PATH: '' })).toBe(
        'TEMPORAL_TLS_CERT_PATH="" is invalid: required with TEMPORAL_TLS_KEY_PATH',
      );
    });
  });
});

describe('configFromEnvOrExit', () => {
  const saved = { ...process.env };
  let exit: jest.SpyInstance;
  beforeEach(() => {
    // Never the real exit: a mutant that rejects good input would end the test process.
    exit = jest.spyOn(process, 'exit').mockImplementation((code) => {
      throw new Error(`exit ${String(code)}`);
    });
  });
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    jest.restoreAllMocks();
  });

  it('reads process.env', () => {
    process.env.CRON_SCHEDULE_MINS = '17';
    expect(configFromEnvOrExit().cronScheduleMins).toBe(17);
  });

  it('exits 1 with one line naming the variable', () => {
    process.env.WS_IDLE_TIMEOUT_MS = 'abc';
    const write = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(() => configFromEnvOrExit()).toThrow('exit 1');
    expect(exit).toHaveBeenCalledWith(1);
    expect(write).toHaveBeenCalledWith('tether: WS_IDLE_TIMEOUT_MS="abc" is invalid: expected a whole number\n');
  });

  it('lets any other error through', () => {
    Object.defineProperty(process.env, 'DB_HOST', {
      configurable: true,
      enumerable: true,
      get() {
        throw new TypeError('env unreadable');
      },
    });
    try {
      expect(() => configFromEnvOrExit()).toThrow('env unreadable');
      expect(exit).not.toHaveBeenCalled();
    } finally {
      delete process.env.DB_HOST;
    }
  });
});

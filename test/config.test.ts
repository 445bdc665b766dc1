import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig } from '../src/config';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('has working defaults for this machine', () => {
    expect(loadConfig({})).toEqual({
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
      temporal: {
        address: '127.0.0.1:7233',
        namespace: 'default',
        taskQueue: 'tether-sessions',
        tls: false,
        uiPort: 8233,
      },
      metricsPort: 9464,
    });
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DB_PORT: '', WS_IDLE_TIMEOUT_MS: '', LOG_LEVEL: '' })).toEqual(loadConfig({}));
  });

  it('reads every variable', () => {
    const c = loadConfig({
      DB_HOST: 'db.internal',
      DB_PORT: '6432',
      DB_NAME: 'relaybox',
      DB_USER: 'svc',
      DB_PASSWORD: 's3cret',
      DB_MAX_CONNECTIONS: '25',
      DB_IDLE_TIMEOUT_MS: '5000',
      DB_TLS_DISABLED: 'false',
      DB_PROXY_ENABLED: 'true',
      REDIS_HOST: 'redis.internal',
      REDIS_PORT: '6380',
      REDIS_TLS_DISABLED: 'false',
      RABBIT_MQ_CONNECTION_STRING: 'amqps://u:p@mq.internal:5671/vhost',
      RABBIT_MQ_QUEUE_COUNT: '40',
      WS_IDLE_TIMEOUT_MS: '45000',
      CRON_SCHEDULE_MINS: '10',
      LOCALHOST: 'true',
      LOG_LEVEL: 'DEBUG',
      TEMPORAL_ADDRESS: 'tether.abc12.tmprl.cloud:7233',
      TEMPORAL_NAMESPACE: 'tether.abc12',
      TEMPORAL_TASK_QUEUE: 'sessions',
      TEMPORAL_TLS: 'true',
      TEMPORAL_TLS_SERVER_NAME: 'tether.abc12.tmprl.cloud',
      TEMPORAL_TLS_CA_PATH: '/certs/ca.pem',
      TEMPORAL_TLS_CERT_PATH: '/certs/client.pem',
      TEMPORAL_TLS_KEY_PATH: '/certs/client.key',
      TEMPORAL_UI_PORT: '8080',
      METRICS_PORT: '9100',
    });
    expect(c).toEqual({
      db: {
        host: 'db.internal',
        port: 6432,
        name: 'relaybox',
        user: 'svc',
        password: 's3cret',
        maxConnections: 25,
        idleTimeoutMs: 5000,
        tls: true,
        proxyEnabled: true,
      },
      redis: { host: 'redis.internal', port: 6380, tls: true },
      rabbitmq: { url: 'amqps://u:p@mq.internal:5671/vhost', queueCount: 40 },
      idleTimeoutMs: 45000,
      cronScheduleMins: 10,
      localhost: true,
      logLevel: 'debug',
      temporal: {
        address: 'tether.abc12.tmprl.cloud:7233',
        namespace: 'tether.abc12',
        taskQueue: 'sessions',
        tls: {
          serverNameOverride: 'tether.abc12.tmprl.cloud',
          serverRootCACertPath: '/certs/ca.pem',
          clientCertPath: '/certs/client.pem',
          clientKeyPath: '/certs/client.key',
        },
        uiPort: 8080,
      },
      metricsPort: 9100,
    });
  });

  describe('numbers', () => {
    const NUMERIC = [
      'DB_PORT',
      'DB_MAX_CONNECTIONS',
      'DB_IDLE_TIMEOUT_MS',
      'REDIS_PORT',
      'RABBIT_MQ_QUEUE_COUNT',
      'WS_IDLE_TIMEOUT_MS',
      'CRON_SCHEDULE_MINS',
      'TEMPORAL_UI_PORT',
      'METRICS_PORT',
    ];
    const cases = NUMERIC.flatMap((name) => ['abc', '0', '-5', '1.5', '12abc', ' '].map((v) => [name, v]));

    it.each(cases)('%s=%j is refused, naming the variable and the value', (name, value) => {
      const err = configError({ [name]: value });
      expect(err.variable).toBe(name);
      expect(err.value).toBe(value);
      expect(err.message).toContain(name);
      expect(err.message).toContain(JSON.stringify(value));
    });

    it.each(['DB_PORT', 'REDIS_PORT', 'TEMPORAL_UI_PORT', 'METRICS_PORT'])('%s must be a port', (name) => {
      expect(configError({ [name]: '70000' }).variable).toBe(name);
      expect(() => loadConfig({ [name]: '1' })).not.toThrow();
    });

    it('WS_IDLE_TIMEOUT_MS is at least one second', () => {
      expect(configError({ WS_IDLE_TIMEOUT_MS: '999' }).variable).toBe('WS_IDLE_TIMEOUT_MS');
      expect(loadConfig({ WS_IDLE_TIMEOUT_MS: '1000' }).idleTimeoutMs).toBe(1000);
    });

    it('accepts surrounding whitespace', () => {
      expect(loadConfig({ DB_PORT: ' 6432 ' }).db.port).toBe(6432);
    });
  });

  describe('booleans', () => {
    const read = {
      DB_TLS_DISABLED: (env: Record<string, string>) => !loadConfig(env).db.tls,
      DB_PROXY_ENABLED: (env: Record<string, string>) => loadConfig(env).db.proxyEnabled,
      REDIS_TLS_DISABLED: (env: Record<string, string>) => !loadConfig(env).redis.tls,
      LOCALHOST: (env: Record<string, string>) => loadConfig(env).localhost,
      TEMPORAL_TLS: (env: Record<string, string>) => loadConfig(env).temporal.tls !== false,
    };

    it.each(Object.keys(read))('%s reads true/1/yes and false/0/no in any case', (name) => {
      const get = read[name as keyof typeof read];
      for (const v of ['true', 'TRUE', '1', 'yes', ' Yes ']) expect(get({ [name]: v })).toBe(true);
      for (const v of ['false', 'False', '0', 'no', 'NO']) expect(get({ [name]: v })).toBe(false);
    });

    it.each(Object.keys(read))('%s refuses anything else', (name) => {
      for (const v of ['maybe', 'on', '2', 'tru']) {
        const err = configError({ [name]: v });
        expect(err.variable).toBe(name);
        expect(err.message).toContain(JSON.stringify(v));
      }
    });

    it('TLS to Postgres and Redis is off unless enabled', () => {
      const c = loadConfig({});
      expect([c.db.tls, c.redis.tls]).toEqual([false, false]);
    });
  });

  it('LOG_LEVEL is one of debug, info, warn, error', () => {
    expect(loadConfig({ LOG_LEVEL: 'Warn' }).logLevel).toBe('warn');
    const err = configError({ LOG_LEVEL: 'verbose' });
    expect(err.variable).toBe('LOG_LEVEL');
    expect(err.message).toContain('debug, info, warn, error');
  });

  it.each(['not a url', 'http://mq:5672', 'redis://127.0.0.1:6379', '127.0.0.1:5672', 'amqp//guest@mq'])(
    'RABBIT_MQ_CONNECTION_STRING=%j is refused',
    (value) => {
      const err = configError({ RABBIT_MQ_CONNECTION_STRING: value });
      expect(err.variable).toBe('RABBIT_MQ_CONNECTION_STRING');
      expect(err.message).toContain(JSON.stringify(value));
    },
  );

  it('RABBIT_MQ_CONNECTION_STRING takes amqp and amqps URLs', () => {
    for (const url of ['amqp://guest:guest@mq:5672', 'amqps://u:p@mq.example.com/vhost']) {
      expect(loadConfig({ RABBIT_MQ_CONNECTION_STRING: url }).rabbitmq.url).toBe(url);
    }
  });

  describe('TEMPORAL_ADDRESS', () => {
    it.each(['temporal:7233', 'localhost:7299', '10.0.0.5:443', 'ns.acct.tmprl.cloud:7233'])('takes %s', (v) => {
      expect(loadConfig({ TEMPORAL_ADDRESS: v }).temporal.address).toBe(v);
    });

    it.each(['temporal', 'http://temporal:7233', 'temporal:', 'temporal:abc', 'temporal:0', 'temporal:70000', ':7233'])(
      'refuses %j',
      (v) => {
        const err = configError({ TEMPORAL_ADDRESS: v });
        expect(err.variable).toBe('TEMPORAL_ADDRESS');
        expect(err.message).toContain('host:port');
      },
    );
  });

  describe('Temporal TLS', () => {
    it('a client certificate needs its key, and the key its certificate', () => {
      const noKey = configError({ TEMPORAL_TLS: 'true', TEMPORAL_TLS_CERT_PATH: '/c.pem' });
      expect(noKey.variable).toBe('TEMPORAL_TLS_KEY_PATH');
      expect(noKey.message).toContain('TEMPORAL_TLS_CERT_PATH');
      const noCert = configError({ TEMPORAL_TLS_KEY_PATH: '/c.key' });
      expect(noCert.variable).toBe('TEMPORAL_TLS_CERT_PATH');
      expect(noCert.message).toContain('TEMPORAL_TLS_KEY_PATH');
    });

    it('a certificate pair or a CA turns TLS on; TEMPORAL_TLS=false still wins', () => {
      const pair = { TEMPORAL_TLS_CERT_PATH: '/c.pem', TEMPORAL_TLS_KEY_PATH: '/c.key' };
      expect(loadConfig(pair).temporal.tls).toEqual({ clientCertPath: '/c.pem', clientKeyPath: '/c.key' });
      expect(loadConfig({ TEMPORAL_TLS_CA_PATH: '/ca.pem' }).temporal.tls).toEqual({ serverRootCACertPath: '/ca.pem' });
      expect(loadConfig({ ...pair, TEMPORAL_TLS: 'false' }).temporal.tls).toBe(false);
    });

    it('TEMPORAL_TLS=true alone is TLS with the system CAs and no client certificate', () => {
      expect(loadConfig({ TEMPORAL_TLS: 'true' }).temporal.tls).toEqual({});
    });
  });

  it('.env.example documents every variable, and docker-compose.yml sets no unknown one', () => {
    const root = path.resolve(__dirname, '..');
    const source = readFileSync(path.join(root, 'src/config.ts'), 'utf8');
    const read = new Set([
      ...[...source.matchAll(/\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!),
      ...[...source.matchAll(/env\.([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!),
    ]);
    expect(read.size).toBeGreaterThan(25);
    const example = readFileSync(path.join(root, '.env.example'), 'utf8');
    const documented = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!));
    expect([...documented].sort()).toEqual([...read].sort());
    const compose = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
    const worker = compose.slice(compose.indexOf('\n  worker:'));
    const set = [...worker.matchAll(/^ {6}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    expect(set.length).toBeGreaterThan(5);
    expect(set.filter((name) => !read.has(name))).toEqual([]);
  });

  it('npm start exits non-zero at once on a bad variable, naming it', async () => {
    const root = path.resolve(__dirname, '..');
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn('npx', ['tsx', 'src/service/main.ts'], {
        cwd: root,
        env: { ...process.env, WS_IDLE_TIMEOUT_MS: 'abc' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`still running after 60 s; stderr: ${err}`));
      }, 60_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stderr: err });
      });
    });
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(stderr).toContain('WS_IDLE_TIMEOUT_MS');
    expect(stderr).toContain('"abc"');
  }, 90_000);
});

import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { loadConfig } from '../src/config';
import { temporalConnectionOptions } from '../src/temporal-connection';
import { connectWorker } from '../src/worker';
import { AppPidKey, SessionStatusKey } from '../src/contracts/search-attributes';
import { devServerEnv } from './helpers/temporal';
import { nanoid } from './helpers/stack';

const ROOT = path.resolve(__dirname, '..');
const SERVER_NAME = 'temporal.tether.test';
const exec = promisify(execFile);

/**
 * A CA, a server certificate for SERVER_NAME only (no IP: connecting to 127.0.0.1 verifies only
 * with the server name override) and a client certificate, made with openssl for this test.
 */
function makeCertificates(dir: string) {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const file = (name: string) => path.join(dir, name);
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=tether test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  const leaf = (name: string, cn: string, ext: string) => {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    writeFileSync(file(`${name}.ext`), ext);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-out',
      `${name}.pem`,
      '-extfile',
      `${name}.ext`,
    );
  };
  leaf(
    'server',
    SERVER_NAME,
    `subjectAltName=DNS:${SERVER_NAME}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
  );
  leaf('client', 'tether-client', 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n');
  return {
    ca: file('ca.pem'),
    serverCert: file('server.pem'),
    serverKey: file('server.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
  };
}
type Certs = ReturnType<typeof makeCertificates>;

/**
 * mTLS in front of a plain dev server (`temporal server start-dev` has no TLS flags): terminates
 * TLS with the test CA, requires a client certificate it signed, and forwards the HTTP/2 bytes.
 * Records the SNI name and client certificate of every accepted connection.
 */
async function mtlsProxy(certs: Certs, target: string) {
  const [host, port] = target.split(':') as [string, string];
  const accepted: { servername: string | false | null; clientCn: unknown }[] = [];
  const open = new Set<net.Socket>();
  const server = tls.createServer(
    {
      key: readFileSync(certs.serverKey),
      cert: readFileSync(certs.serverCert),
      ca: readFileSync(certs.ca),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      accepted.push({ servername: socket.servername, clientCn: socket.getPeerCertificate().subject?.CN });
      const upstream = net.connect(Number(port), host);
      open.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      const end = () => {
        socket.destroy();
        upstream.destroy();
        open.delete(socket);
        open.delete(upstream);
      };
      socket.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return {
    address,
    accepted,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}

describe('Temporal connection options: one function for the worker and the CLI', () => {
  let dir: string;
  let certs: Certs;

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tether-tls-'));
    certs = makeCertificates(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const mtlsEnv = (address = '127.0.0.1:7233'): Record<string, string> => ({
    TEMPORAL_ADDRESS: address,
    TEMPORAL_NAMESPACE: 'relaybox',
    TEMPORAL_TLS_CA_PATH: certs.ca,
    TEMPORAL_TLS_CERT_PATH: certs.clientCert,
    TEMPORAL_TLS_KEY_PATH: certs.clientKey,
    TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
  });

  test('mTLS config: address, namespace, server name, CA and client pair (the files read) reach the options', async () => {
    const options = await temporalConnectionOptions(loadConfig(mtlsEnv('temporal.internal:7233')));
    expect(options.namespace).toBe('relaybox');
    expect(options.connection.address).toBe('temporal.internal:7233');
    expect(options.connection.tls).toEqual({
      serverNameOverride: SERVER_NAME,
      serverRootCACertificate: readFileSync(certs.ca),
      clientCertPair: { crt: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) },
    });
    expect(Buffer.from(options.connection.tls!.serverRootCACertificate!).toString()).toMatch(
      /^-----BEGIN CERTIFICATE-----/,
    );
  });

  test('TLS without a client certificate; no TLS; an unreadable file names its variable', async () => {
    expect((await temporalConnectionOptions(loadConfig({ TEMPORAL_TLS: 'true' }))).connection).toEqual({
      address: '127.0.0.1:7233',
      tls: {},
    });
    expect((await temporalConnectionOptions(loadConfig({ TEMPORAL_TLS_CA_PATH: certs.ca }))).connection.tls).toEqual({
      serverRootCACertificate: readFileSync(certs.ca),
    });
    expect((await temporalConnectionOptions(loadConfig({}))).connection).toEqual({ address: '127.0.0.1:7233' });
    expect(
      (await temporalConnectionOptions(loadConfig({ ...mtlsEnv(), TEMPORAL_TLS: 'false' }))).connection.tls,
    ).toBeUndefined();
    await expect(
      temporalConnectionOptions(loadConfig({ TEMPORAL_TLS_CA_PATH: path.join(dir, 'missing.pem') })),
    ).rejects.toThrow(/^TEMPORAL_TLS_CA_PATH=".*missing\.pem" cannot be read/);
  });

  describe('against a dev server behind mTLS', () => {
    let env: TestWorkflowEnvironment;
    let proxy: Awaited<ReturnType<typeof mtlsProxy>>;

    beforeAll(async () => {
      env = await devServerEnv();
      proxy = await mtlsProxy(certs, env.address);
    });
    afterAll(async () => {
      await proxy?.close();
      await env?.teardown();
    });

    test('the worker connects (NativeConnection) with the client certificate and the server name', async () => {
      const config = loadConfig({ ...mtlsEnv(proxy.address), TEMPORAL_NAMESPACE: 'default' });
      const connection = await connectWorker(config);
      try {
        const { namespaceInfo } = await connection.workflowService.describeNamespace({ namespace: 'default' });
        expect(namespaceInfo?.name).toBe('default');
      } finally {
        await connection.close();
      }
      expect(proxy.accepted).toContainEqual({ servername: SERVER_NAME, clientCn: 'tether-client' });
    });

    test('without the server name the certificate does not verify; without a client certificate the proxy refuses', async () => {
      const acceptedBefore = proxy.accepted.length;
      const noName = await temporalConnectionOptions(
        loadConfig({ ...mtlsEnv(proxy.address), TEMPORAL_TLS_SERVER_NAME: '' }),
      );
      await expect(Connection.connect({ ...noName.connection, connectTimeout: 3_000 })).rejects.toThrow();
      const noCert = await temporalConnectionOptions(
        loadConfig({
          TEMPORAL_ADDRESS: proxy.address,
          TEMPORAL_TLS_CA_PATH: certs.ca,
          TEMPORAL_TLS_SERVER_NAME: SERVER_NAME,
        }),
      );
      await expect(Connection.connect({ ...noCert.connection, connectTimeout: 3_000 })).rejects.toThrow();
      expect(proxy.accepted.length).toBe(acceptedBefore); // neither got through the handshake
    });

    test('npx tether sessions list / stats reach it with the same variables', async () => {
      // A session workflow on a queue no worker polls: visibility lists it all the same.
      const appPid = `tls-${nanoid(8)}`;
      const workflowId = `session:${appPid}:${nanoid(8)}`;
      const client = new Client({ connection: env.connection, namespace: 'default' });
      await client.workflow.start('sessionWorkflow', {
        taskQueue: `nobody-${nanoid(6)}`,
        workflowId,
        args: [],
        typedSearchAttributes: [
          { key: AppPidKey, value: appPid },
          { key: SessionStatusKey, value: 'connected' },
        ],
      });
      const cliEnv = { ...process.env, ...mtlsEnv(proxy.address), TEMPORAL_NAMESPACE: 'default', LOG_LEVEL: 'error' };
      const cli = (...args: string[]) => exec(path.join(ROOT, 'bin/tether'), args, { env: cliEnv, cwd: ROOT });
      // Visibility is eventually consistent: a moment after the start.
      let listed = '';
      for (let i = 0; i < 20 && !listed.includes(workflowId); i++) {
        listed = (await cli('sessions', 'list', '--app', appPid)).stdout;
        if (!listed.includes(workflowId)) await new Promise((r) => setTimeout(r, 500));
      }
      const lines = listed.trim().split('\n');
      expect(lines[0]).toBe('WORKFLOW ID\tEXECUTION\tSESSION\tSTARTED AT');
      expect(lines[1]).toMatch(
        new RegExp(
          `^${workflowId}\\tRUNNING\\tconnected\\t\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z \\((now|.* ago)\\)$`,
        ),
      );
      expect((await cli('sessions', 'stats', '--app', appPid)).stdout).toBe(
        'connected\t1\ndisconnected\t0\ndestroyed\t0\n',
      );
      expect(proxy.accepted.filter((a) => a.clientCn === 'tether-client').length).toBeGreaterThanOrEqual(3);
      await client.workflow.getHandle(workflowId).terminate('test over');
    });
  });
});

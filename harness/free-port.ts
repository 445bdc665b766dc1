import net from 'node:net';

/** A TCP port free on 127.0.0.1 right now (the harness's own Temporal server listens there). */
export function freePort(): Promise<number> {
  return listenOnce(0);
}

/**
 * A free port under `limit`, for a number that must fit a smaller type than the kernel's
 * ephemeral ports (32768 and up) do: the Temporal server stores its membership port as a
 * Postgres smallint (at most 32767). Random tries from 10000, where few services listen.
 */
export async function freePortBelow(limit: number): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const port = 10_000 + Math.floor(Math.random() * (limit - 10_000));
    try {
      return await listenOnce(port);
    } catch {
      // taken: another try
    }
  }
  throw new Error(`no free port found below ${limit}`);
}

function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as net.AddressInfo;
      server.close(() => resolve(bound));
    });
  });
}

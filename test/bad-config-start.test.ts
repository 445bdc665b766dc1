import { spawn } from 'node:child_process';
import path from 'node:path';

/** Configuration from the outside: the process refuses to start (src/config.ts is tested in test/unit/config.test.ts). */
describe('npm start with bad configuration', () => {
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

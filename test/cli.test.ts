import { main, parseCommandLine, UsageError, visibilityQuery, type Io } from '../src/cli';

/** Runs the CLI in-process; none of these reach Temporal (they stop at the command line). */
async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l), env: {}, now: () => 0 };
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ops CLI command line (node:util parseArgs, strict)', () => {
  test('--help for the CLI and for each command, exit 0', async () => {
    for (const argv of [['--help'], ['sessions'], ['sessions', '--help']]) {
      const r = await run(...argv);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/usage: tether sessions <command>/);
    }
    for (const command of ['list', 'describe', 'invalidate', 'stats']) {
      const r = await run('sessions', command, '--help');
      expect(r).toMatchObject({ code: 0, err: '' });
      expect(r.out).toMatch(new RegExp(`^usage: tether sessions ${command}`));
    }
  });

  test.each([
    [['sessions', 'list', '--foo'], 'tether sessions list: unknown flag --foo'],
    [['sessions', 'stats', '-x'], 'tether sessions stats: unknown flag -x'],
    [['sessions', 'list', '--app'], 'tether sessions list: --app needs a value'],
    [['sessions', 'list', '--app', '--status', 'connected'], 'tether sessions list: --app needs a value'],
    [['sessions', 'list', '--app='], 'tether sessions list: --app needs a value'],
    [['sessions', 'invalidate', 'c1', '--reason'], 'tether sessions invalidate: --reason needs a value'],
    [['sessions', 'describe', '--json=yes', 'c1'], 'tether sessions describe: --json takes no value'],
    [['sessions', 'describe'], 'tether sessions describe: missing CONNECTION_ID'],
    [['sessions', 'describe', 'a', 'b'], 'tether sessions describe: unexpected argument b'],
    [['sessions', 'list', 'extra'], 'tether sessions list: unexpected argument extra'],
    [
      ['sessions', 'list', '--status', 'gone'],
      'tether sessions list: --status must be one of connected, disconnected, destroyed',
    ],
    [['sessions', 'list', '--limit', '0'], 'tether sessions list: --limit must be a whole number >= 1'],
    [['sessions', 'purge'], 'tether: unknown command sessions purge'],
    [['users'], 'tether: unknown command users'],
    [[], 'tether: no command'],
  ])('%j: exit 2, "%s"', async (argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.err.split('\n')[0]).toBe(message);
    expect(r.err).toMatch(/usage: /);
    expect(r.out).toBe('');
  });

  test('flags parse to values; -- ends the flags', () => {
    expect(parseCommandLine(['sessions', 'list', '--app', 'a1', '--status=connected', '--limit', '5'])).toEqual({
      command: 'list',
      help: false,
      positionals: [],
      values: { app: 'a1', status: 'connected', limit: '5' },
    });
    expect(parseCommandLine(['sessions', 'describe', '--', '--odd-id'])).toMatchObject({ positionals: ['--odd-id'] });
    expect(() => parseCommandLine(['sessions', 'list', '--nope'])).toThrow(UsageError);
  });

  test('a bad variable is named, exit 1, before any connection', async () => {
    const err: string[] = [];
    const code = await main(['sessions', 'stats'], {
      out: () => undefined,
      err: (l) => err.push(l),
      env: { TEMPORAL_ADDRESS: 'no-port' },
      now: () => 0,
    });
    expect(code).toBe(1);
    expect(err).toEqual(['tether: TEMPORAL_ADDRESS="no-port" is invalid: expected host:port']);
  });

  test('visibility query quotes every value', () => {
    expect(visibilityQuery({ app: 'a"1', client: 'c\\2', status: 'connected' })).toBe(
      'WorkflowType = "sessionWorkflow" AND AppPid = "a1" AND ClientId = "c2" AND ExecutionStatus = "Running" AND SessionStatus = "connected"',
    );
    expect(visibilityQuery({ status: 'destroyed' })).toBe(
      'WorkflowType = "sessionWorkflow" AND ExecutionStatus != "Running"',
    );
  });
});

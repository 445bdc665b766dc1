import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { gotoUntilVisible, launchBrowser, listedSessionIds, screenshot } from './helpers/browser';

const ROOT = path.resolve(__dirname, '..');
const run = promisify(execFile);

/**
 * Free-looking ports away from the defaults (and from each other): Temporal, UI, metrics (+1),
 * gateway; below Linux's ephemeral range (32768 up), where an outgoing connection of the suite
 * can hold one (CI-like run: "Address already in use" for the metrics exporter).
 */
const base = 21000 + Math.floor(Math.random() * 2300) * 5;
const ports = { temporal: base, ui: base + 1, metrics: base + 2, gateway: base + 4 };
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'tether-demo-'));
const env = {
  ...process.env,
  TEMPORAL_ADDRESS: `127.0.0.1:${ports.temporal}`,
  TEMPORAL_UI_PORT: String(ports.ui),
  METRICS_PORT: String(ports.metrics),
  GATEWAY_PORT: String(ports.gateway),
  DEMO_DATA_DIR: dataDir,
  // The machine's Redis is shared with other suites: no sweep of their keys during the test.
  CRON_SCHEDULE_MINS: '60',
  // What the demo sets by default, for the CLI calls below.
  WS_IDLE_TIMEOUT_MS: '5000',
  TEMPORAL_TASK_QUEUE: 'tether-demo',
};
const ui = `http://127.0.0.1:${ports.ui}`;

/** Processes still running that the demo started: its dev server (its database is in dataDir), its gateways. */
function leftovers(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (cmd.includes(dataDir) || cmd.includes(`examples/gateway.ts ${ports.gateway}`)) found.push(`${pid}: ${cmd}`);
  }
  return found;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stats(appPid: string): Promise<Record<string, number>> {
  const { stdout } = await run(path.join(ROOT, 'bin/tether'), ['sessions', 'stats', '--app', appPid], {
    cwd: ROOT,
    env,
    timeout: 20_000,
  });
  return Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .map((l) => l.split('\t'))
      .map(([k, v]) => [k!, Number(v)]),
  );
}

/**
 * The event list of a workflow's history page, oldest first, each row as the name the UI shows:
 * `activity:{activity type}` for an activity, `signal:{name}`, `timer`, and the event type otherwise.
 */
async function eventNames(page: Page, workflowId: string): Promise<string[]> {
  await page.goto(`${ui}/namespaces/default/workflows/${encodeURIComponent(workflowId)}`);
  const rows = page.locator('tr[data-testid="event-summary-row"]');
  await rows.first().waitFor({ timeout: 20_000 });
  const texts = await rows.evaluateAll((trs) =>
    trs.map((tr) => {
      const row = tr as unknown as { dataset: { eventid?: string }; innerText: string };
      return { id: Number(row.dataset.eventid), text: row.innerText.replace(/\s+/g, ' ') };
    }),
  );
  return texts
    .sort((a, b) => a.id - b.id)
    .map(({ text }) => {
      const activity = /Activity Task Scheduled .*?Activity Type (\w+)/.exec(text);
      if (activity) return `activity:${activity[1]}`;
      const signal = /Workflow Execution Signaled Signal Name (\w+)/.exec(text);
      if (signal) return `signal:${signal[1]}`;
      if (/Timer (Started|Fired)/.test(text)) return 'timer';
      return /Workflow Execution (Started|Completed)/.exec(text)?.[0] ?? 'other';
    });
}

/** `expected` appears in `names` in this order (other events may come between). */
function inOrder(names: string[], expected: string[]): boolean {
  let i = 0;
  for (const name of names) if (name === expected[i]) i++;
  return i === expected.length;
}

describe('npm run demo (a child process; Web UI in headless Chromium)', () => {
  let demo: ChildProcess;
  let output = '';
  let exited: Promise<number | string>;
  let browser: Browser | undefined;

  beforeAll(async () => {
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    if (demo?.pid && groupAlive(demo.pid)) process.kill(-demo.pid, 'SIGKILL');
    for (const line of leftovers()) process.kill(Number(line.split(':')[0]), 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('shows connected, disconnected and destroyed sessions within 60 s, their histories in the UI, and stops cleanly on Ctrl-C', async () => {
    const started = Date.now();
    const marks: string[] = [];
    const mark = (what: string) => marks.push(`${what} ${((Date.now() - started) / 1000).toFixed(1)} s`);
    // Own process group, like a terminal's foreground job: Ctrl-C signals npm and node alike.
    demo = spawn('npm', ['run', 'demo'], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    demo.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    exited = new Promise((resolve) => demo.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
    const failed = exited.then((code) => {
      throw new Error(`the demo exited (${code}):\n${output}`);
    });
    failed.catch(() => undefined); // raced below; a normal exit at the end is not a failure
    const until = async <T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> => {
      const deadline = Date.now() + ms;
      for (;;) {
        const value = await Promise.race([probe(), failed]);
        if (value !== undefined) return value;
        if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms; demo output:\n${output}`);
        await sleep(1000);
      }
    };

    const appPid = await until('the demo app', 60_000, () => Promise.resolve(/demo app: (\S+)/.exec(output)?.[1]));
    const lost = await until('a gateway-lost session', 60_000, () =>
      Promise.resolve(/gateway-lost, then destroyed \(e\.g\. (session:\S+)\)/.exec(output)?.[1]),
    );
    const withinGrace = /within the 5 s grace \(e\.g\. (session:\S+)\)/.exec(output)?.[1];
    expect(withinGrace).toBeDefined();

    // Every state of the lifecycle, in the ops CLI, within a minute of `npm run demo`.
    const counts = await until(
      'connected, disconnected and destroyed sessions',
      60_000 - (Date.now() - started),
      async () => {
        const c = await stats(appPid).catch(() => undefined);
        return c && c.connected! > 0 && c.disconnected! > 0 && c.destroyed! > 0 ? c : undefined;
      },
    );
    const allStatesAfterMs = Date.now() - started;
    mark('all states');
    expect(counts).toEqual({
      connected: expect.any(Number),
      disconnected: expect.any(Number),
      destroyed: expect.any(Number),
    });

    const page = await browser!.newPage({ viewport: { width: 1400, height: 900 } });
    // The workflow list: the demo's sessions.
    const query = encodeURIComponent(`WorkflowType = "sessionWorkflow" AND AppPid = "${appPid}"`);
    await gotoUntilVisible(
      page,
      `${ui}/namespaces/default/workflows?query=${query}`,
      page.locator('a[href*="/workflows/session%3A"]').first(),
      { tries: 6, waitMs: 8000 },
    );
    const listed = await listedSessionIds(page);
    if (listed.length === 0) await screenshot(page, 'ui-demo-sessions-failed.png');
    expect(listed.length).toBeGreaterThanOrEqual(10);
    for (const id of listed) expect(id.startsWith(`session:${appPid}:`)).toBe(true);
    await screenshot(page, 'ui-demo-sessions.png');
    mark('list');

    // A session whose gateway was killed: connect, gatewayLost (its close recorded in bulk by the
    // gateway's fan-out, so no close activity), soft and hard destroy, completed.
    const lostEvents = await until('the gateway-lost session destroyed', 30_000, async () => {
      const names = await eventNames(page, lost);
      return names.includes('Workflow Execution Completed') ? names : undefined;
    });
    expect(lostEvents[0]).toBe('Workflow Execution Started');
    expect(
      inOrder(lostEvents, [
        'activity:connectSession',
        'signal:gatewayLost',
        'activity:softDestroySession',
        'activity:hardDestroySession',
        'Workflow Execution Completed',
      ]),
    ).toBe(true);
    expect(lostEvents.filter((n) => n.startsWith('signal:'))).toEqual(['signal:gatewayLost']);
    expect(lostEvents).not.toContain('activity:closeSession');
    await screenshot(page, 'ui-demo-gateway-lost.png');
    mark('gateway-lost history');

    // A session that reconnected within the grace: disconnected, active, connect again (which
    // records the old socket's close: no close activity).
    // Its heartbeats come every few seconds while it is connected: wait for one after a connect too.
    const graceEvents = await until('the reconnect and a heartbeat in the history', 30_000, async () => {
      const names = await eventNames(page, withinGrace!);
      const reconnected = names.filter((n) => n === 'activity:connectSession').length >= 2;
      return reconnected && inOrder(names, ['activity:connectSession', 'signal:heartbeat']) ? names : undefined;
    });
    expect(
      inOrder(graceEvents, [
        'activity:connectSession',
        'signal:disconnected',
        'signal:active',
        'activity:connectSession',
      ]),
    ).toBe(true);
    expect(graceEvents).not.toContain('activity:closeSession');
    expect(inOrder(graceEvents, ['activity:connectSession', 'signal:heartbeat'])).toBe(true);

    mark('reconnect history');
    // /metrics and Redis show it too.
    const metrics = await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text();
    expect(metrics).toMatch(/tether_sessions_destroyed_total\{[^}]*reason="gateway-lost"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/tether_sessions_reconnected_total\{[^}]*\} [1-9]/);

    // Ctrl-C: the terminal signals the whole foreground group.
    process.kill(-demo.pid!, 'SIGINT');
    const giveUp = new AbortController();
    const code = await Promise.race([
      exited,
      sleep(30_000, 'still running after 30 s', { signal: giveUp.signal }).catch(() => 'aborted'),
    ]);
    giveUp.abort();
    mark('stopped');
    expect({ code, tail: output.trimEnd().split('\n').slice(-1)[0] }).toEqual({ code: 0, tail: '[demo] stopped' });
    await sleep(500);
    expect(groupAlive(demo.pid!)).toBe(false);
    expect(leftovers()).toEqual([]);
    process.stdout.write(
      `demo: every state after ${allStatesAfterMs} ms (${counts.connected} connected, ${counts.disconnected} disconnected, ${counts.destroyed} destroyed); ${marks.join(', ')}\n`,
    );
  }, 150_000);
});

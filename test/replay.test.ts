import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { decodeHistory, recordHistories } from './helpers/histories';
import { startStack, testConfig } from './helpers/stack';
import { timeSkippingEnv, workflowBundle } from './helpers/temporal';

// One folder per release: a release's histories are recorded once and kept, so every later
// release proves it still replays what earlier ones left running (scripts/record-histories.ts).
const FIXTURES = path.join(__dirname, 'fixtures/histories');
const release = (dir: string) =>
  readdirSync(path.join(FIXTURES, dir))
    .filter((f) => f.endsWith('.pb'))
    .map((f) => ({
      workflowId: `${dir}/${f.replace(/\.pb$/, '')}`,
      history: decodeHistory(readFileSync(path.join(FIXTURES, dir, f))),
    }));

async function replay(histories: { workflowId: string; history: unknown }[]) {
  const failures: string[] = [];
  for await (const result of Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories)) {
    if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
  }
  return failures;
}

/**
 * Determinism: today's workflow code must replay the histories of workflows started by earlier
 * code (sessions live for hours and cross deployments), and its own.
 */
describe('workflow replay', () => {
  it('replays the 0.1 histories (inputs without a version run the 0.1 session code)', async () => {
    const histories = release('0.1');
    expect(histories.length).toBe(6);
    expect(await replay(histories)).toEqual([]);
  });

  it('replays the 0.2 histories of every session path, a lost gateway, a user workflow and a sweep', async () => {
    const histories = release('0.2');
    expect(histories.map((h) => h.workflowId)).toEqual(
      expect.arrayContaining([
        '0.2/session-gateway-lost',
        '0.2/gateway-lease-lapsed',
        '0.2/session-continued-as-new',
        '0.2/sweep-stale-ids',
      ]),
    );
    expect(await replay(histories)).toEqual([]);
  });

  it('replays the 0.3 histories (every effect a regular activity)', async () => {
    const histories = release('0.3');
    expect(histories.map((h) => h.workflowId)).toEqual(
      expect.arrayContaining(['0.3/session-gateway-lost', '0.3/session-continued-as-new', '0.3/sweep-stale-ids']),
    );
    expect(await replay(histories)).toEqual([]);
  });

  it('replays the 0.4 histories (runs started with input version 3: no patch marker)', async () => {
    const histories = release('0.4');
    expect(histories.map((h) => h.workflowId)).toEqual(
      expect.arrayContaining(['0.4/session-gateway-lost', '0.4/gateway-lease-lapsed', '0.4/session-continued-as-new']),
    );
    const markers = histories.flatMap((h) =>
      ((h.history as { events?: { markerRecordedEventAttributes?: unknown }[] }).events ?? []).filter(
        (e) => e.markerRecordedEventAttributes,
      ),
    );
    expect(markers).toEqual([]);
    expect(await replay(histories)).toEqual([]);
  });

  it('replays the 0.5 histories (a lost gateway’s session told its close is recorded: no close activity)', async () => {
    const histories = release('0.5');
    const lost = histories.find((h) => h.workflowId === '0.5/session-gateway-lost')!;
    const events = (lost.history as temporal.api.history.v1.IHistory).events ?? [];
    const told = events.find((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'gatewayLost');
    const [payload] = told!.workflowExecutionSignaledEventAttributes!.input!.payloads!;
    expect(JSON.parse(Buffer.from(payload!.data!).toString())).toHaveProperty('closedSocketId');
    const activities = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(activities).not.toContain('closeSession');
    expect(await replay(histories)).toEqual([]);
  });

  it('replays the 0.6 histories (input version 4: a close recorded by the soft destroy or by the reconnect’s connect, no close activity)', async () => {
    const histories = release('0.6');
    const reconnects = histories.find((h) => h.workflowId === '0.6/session-user-reconnects-destroyed')!;
    const scheduled = ((reconnects.history as temporal.api.history.v1.IHistory).events ?? []).flatMap(
      (e) => e.activityTaskScheduledEventAttributes ?? [],
    );
    expect(scheduled.map((a) => a.activityType?.name)).not.toContain('closeSession');
    const carried = scheduled
      .filter((a) => a.activityType?.name === 'connectSession')
      .map((a) => JSON.parse(Buffer.from(a.input!.payloads![0]!.data!).toString()) as { closed?: unknown });
    expect(carried.some((input) => input.closed !== undefined)).toBe(true);
    expect(await replay(histories)).toEqual([]);
  });

  describe('fresh histories (time-skipping)', () => {
    let env: TestWorkflowEnvironment;
    let stack: Awaited<ReturnType<typeof startStack>>;
    beforeAll(async () => {
      env = await timeSkippingEnv();
      stack = await startStack(env, testConfig({ WS_IDLE_TIMEOUT_MS: '30000' }));
    });
    afterAll(async () => {
      await stack?.stop();
      await env?.teardown();
    });

    it('replays the histories the current code writes, continue-as-new included', async () => {
      const recorded = await recordHistories(env, stack);
      const histories = recorded.map((h) => ({ workflowId: h.workflowId, history: decodeHistory(h.bytes) }));
      expect(recorded.map((h) => h.name)).toContain('session-continued-as-new');
      const continued = decodeHistory(recorded.find((h) => h.name === 'session-continued-as-new')!.bytes);
      expect(continued.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes).toBeTruthy();
      expect(await replay(histories)).toEqual([]);
    }, 120_000);
  });
});

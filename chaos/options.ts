import path from 'node:path';
import { ROOT } from '../harness/root';
import type { ServiceKind } from './services';

export type FaultKind =
  | 'worker-kill'
  | 'worker-kill-mid-destroy'
  | 'redis-outage'
  | 'postgres-outage'
  | 'rabbitmq-outage'
  | 'temporal-restart'
  | 'gateway-kill';

export const FAULT_KINDS: readonly FaultKind[] = [
  'worker-kill',
  'worker-kill-mid-destroy',
  'redis-outage',
  'postgres-outage',
  'rabbitmq-outage',
  'temporal-restart',
  'gateway-kill',
];

export interface ChaosOptions {
  mode: 'quick' | 'full';
  /** Churn goes on until at least this many sessions were started and every fault has run. */
  sessions: number;
  /** Scenario scripts in flight at once. */
  concurrency: number;
  /** WS_IDLE_TIMEOUT_MS of the run (hard destroy 4 × idle; the soft destroy stays 5 s). */
  idleMs: number;
  /** How long each of Redis, Postgres, RabbitMQ stays down. */
  outageMs: number;
  /** Between SIGKILL of the Temporal dev server and its restart. */
  temporalDownMs: number;
  /** The faults, in order. */
  faults: FaultKind[];
  /** Quiet time before each fault (churn builds up pending destroys). */
  faultGapMs: number;
  longLived: number;
  /** Sessions held by the gateway each `gateway-kill` fault kills. */
  gatewayKillSessions: number;
  clientFuzzRuns: number;
  rawFuzzRuns: number;
  seed: number;
  /** Give up on the whole run after this long. */
  maxRunMs: number;
  resultsDir: string;
  /**
   * Never start the worker (`--no-worker`): shows that a run which observed nothing fails, naming
   * what it did not observe. Worker faults are skipped.
   */
  noWorker: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

export function defaults(mode: 'quick' | 'full'): ChaosOptions {
  const common = {
    // Liveness is 4 × idle: 12 s outlasts a Temporal restart (≈ 5.5 s down, then reconnects), so a
    // long-lived session's pongs get through before it is taken for dead.
    idleMs: 3_000,
    temporalDownMs: 3_000,
    seed: Math.floor(Math.random() * 2 ** 31),
    resultsDir: path.join(ROOT, 'chaos/results'),
    noWorker: false,
  };
  if (mode === 'quick') {
    return {
      ...common,
      mode,
      sessions: 300,
      concurrency: 24,
      outageMs: 6_000,
      faults: [
        'worker-kill',
        'redis-outage',
        'worker-kill-mid-destroy',
        'postgres-outage',
        'rabbitmq-outage',
        'temporal-restart',
        'gateway-kill',
      ],
      faultGapMs: 4_000,
      longLived: 8,
      gatewayKillSessions: 16,
      clientFuzzRuns: 300,
      rawFuzzRuns: 120,
      maxRunMs: 15 * 60_000,
    };
  }
  return {
    ...common,
    mode,
    sessions: 1_200,
    concurrency: 40,
    outageMs: 30_000,
    faults: [
      'worker-kill',
      'worker-kill-mid-destroy',
      'redis-outage',
      'worker-kill',
      'temporal-restart',
      'worker-kill-mid-destroy',
      'postgres-outage',
      'worker-kill',
      'rabbitmq-outage',
      'worker-kill-mid-destroy',
      'temporal-restart',
      'gateway-kill',
      'worker-kill',
      'gateway-kill',
    ],
    faultGapMs: 8_000,
    longLived: 20,
    gatewayKillSessions: 40,
    clientFuzzRuns: 2_000,
    rawFuzzRuns: 500,
    maxRunMs: 60 * 60_000,
  };
}

const SERVICE_OF: Partial<Record<FaultKind, ServiceKind>> = {
  'redis-outage': 'redis',
  'postgres-outage': 'postgres',
  'rabbitmq-outage': 'rabbitmq',
};
export function serviceOf(kind: FaultKind): ServiceKind | undefined {
  return SERVICE_OF[kind];
}

const USAGE = `npm run chaos -- [--quick] [--sessions N] [--concurrency N] [--idle-ms MS] [--outage-ms MS]
                    [--temporal-down-ms MS] [--faults a,b,...] [--seed N] [--long-lived N]
                    [--client-fuzz N] [--raw-fuzz N] [--gateway-kill-sessions N]
                    [--results-dir DIR] [--no-worker]
--sessions 0: no session at all (no churn; no long-lived sessions or faults unless given)
--no-worker: never start the worker (the run must fail, naming what it did not observe)
faults: worker-kill, worker-kill-mid-destroy, redis-outage, postgres-outage, rabbitmq-outage, temporal-restart,
        gateway-kill`;

export function parseArgs(argv: string[]): ChaosOptions {
  const mode = argv.includes('--quick') ? 'quick' : 'full';
  const o = defaults(mode);
  const given = new Set(argv);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick' || a === '--full') continue;
    if (a === '--no-worker') {
      o.noWorker = true;
      continue;
    }
    if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
    const n = () => {
      const x = Number(v);
      if (!Number.isFinite(x) || x < 0) throw new Error(`${a}: expected a number, got ${v}`);
      return x;
    };
    switch (a) {
      case '--sessions':
        o.sessions = n();
        break;
      case '--concurrency':
        o.concurrency = Math.max(1, n());
        break;
      case '--idle-ms':
        o.idleMs = Math.max(1_000, n());
        break;
      case '--outage-ms':
        o.outageMs = n();
        break;
      case '--temporal-down-ms':
        o.temporalDownMs = n();
        break;
      case '--faults':
        o.faults = v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean) as FaultKind[];
        break;
      case '--fault-gap-ms':
        o.faultGapMs = n();
        break;
      case '--seed':
        o.seed = n();
        break;
      case '--long-lived':
        o.longLived = n();
        break;
      case '--client-fuzz':
        o.clientFuzzRuns = n();
        break;
      case '--raw-fuzz':
        o.rawFuzzRuns = n();
        break;
      case '--gateway-kill-sessions':
        o.gatewayKillSessions = Math.max(2, n());
        break;
      case '--results-dir':
        o.resultsDir = path.resolve(v);
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  if (o.sessions === 0) {
    if (!given.has('--long-lived')) o.longLived = 0;
    if (!given.has('--faults')) o.faults = [];
  }
  for (const f of o.faults) if (!FAULT_KINDS.includes(f)) throw new Error(`unknown fault ${f}\n${USAGE}`);
  return o;
}

/** What every scenario gets from the harness, and what it gives back. */
import type { Client } from '@temporalio/client';
import type Redis from 'ioredis';
import type { Pool } from 'pg';
import type { Config } from '../../src/config';
import type { EngineInfo } from './engines';
import type { Progress } from './progress';
import type { Bundles } from './stack';

export interface Figure {
  /** Stable key, e.g. `churn.lifecycles_per_s`. */
  key: string;
  label: string;
  /** null when it could not be measured (the note says why). */
  value: number | null;
  unit: string;
  note?: string;
}

export interface Audit {
  /** Sessions (connections) the scenario created. */
  sessions: number;
  /** Of those, seen destroyed by the observer. */
  destroyed: number;
  clean: boolean;
  problems: string[];
}

export interface ScenarioResult {
  scenario: string;
  /** The scenario ran to its end (figures may still say the machine did not keep up). */
  completed: boolean;
  error?: string;
  figures: Figure[];
  config: Record<string, unknown>;
  /** Raw material behind the figures (steps, windows, distributions). */
  details: Record<string, unknown>;
  audit: Audit | null;
  durationMs: number;
  /** CPU seconds used during the scenario, by whom (noise indicator: `other`). */
  cpu?: CpuAccount;
  /** The Temporal engine it ran on, in an `--engines` run (its figures' keys name it too). */
  engine?: EngineInfo;
}

export interface CpuAccount {
  wallSeconds: number;
  machineCpus: number;
  /** CPU seconds. */
  bench: number;
  worker: number;
  /** The Temporal server process (the dev server unless the run is on another engine). */
  devServer: number;
  /** Everything else on the machine (other people's tests, services: Redis, Postgres, RabbitMQ). */
  other: number;
  /** Share of the machine's CPU capacity in use, % (all processes). */
  machineBusyPct: number;
}

/** The run's Temporal server (bench/lib/engines.ts), as scenarios reach it. */
export interface BenchTemporal {
  address: string;
  namespace: string;
  client: Client;
  /** The server process, for its CPU; undefined once it is gone. */
  serverPid: number | undefined;
  /** Processes doing the server's persistence apart from it (Postgres backends); none: in process. */
  persistencePids?: () => Promise<number[]>;
}

export interface BenchContext {
  env: BenchTemporal;
  redis: Redis;
  pg: Pool;
  config: Config;
  bundles: Bundles;
  quick: boolean;
  seed: number;
  progress: Progress;
  /** Worker child pids started by the scenario, for the CPU account. */
  workerPids: Set<number>;
}

export interface Scenario {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

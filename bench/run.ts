/**
 * `npm run bench [-- scenario... ] [--quick] [--seed N] [--engines E,...] [--out FILE] [--update-readme] [--no-progress]`
 *
 * Starts a Temporal dev server (the cached Temporal CLI), bundles the workflows, runs the chosen
 * scenarios (default: all) against tether with workers in child processes, prints a table and
 * writes the JSON under bench/results/. `--engines` also runs the ceiling scenario once on each
 * Temporal engine named (bench/lib/engines.ts), one engine up at a time. The backing services
 * must be up (`npm run bench` runs scripts/setup.ts first). See bench/README.md.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { ROOT } from '../harness/root';
import { NAMESPACE } from '../harness/temporal-server';
import { loadConfig } from '../src/config';
import { createPgPool } from '../src/service/resources';
import type { BenchContext, Figure, Scenario, ScenarioResult } from './lib/context';
import { ENGINE_NAMES, ENGINES, startEngine, type EngineInfo, type EngineName } from './lib/engines';
import { Progress } from './lib/progress';
import {
  cpuAccount,
  cpuSnapshot,
  engineMarkdown,
  engineTextTable,
  git,
  machine,
  markdownTable,
  textTable,
  workerTicks,
} from './lib/report';
import { bundleWorkflows } from './lib/stack';
import { round } from './lib/stats';
import { ceiling } from './scenarios/ceiling';
import { churn } from './scenarios/churn';
import { capacity } from './scenarios/capacity';
import { cost } from './scenarios/cost';
import { gatewayLost } from './scenarios/gateway-lost';
import { steady } from './scenarios/steady';
import { storm } from './scenarios/storm';

export const SCENARIOS: Scenario[] = [churn, steady, storm, cost, capacity, gatewayLost, ceiling];

export interface BenchOptions {
  scenarios: string[];
  quick: boolean;
  seed: number;
  /** Run the ceiling scenario once on each of these engines instead of once on the dev server. */
  engines?: EngineName[];
  /** JSON output file; default bench/results/<time>-<scenarios>[-quick].json; null: none. */
  out?: string | null;
  updateReadme?: boolean;
  progress?: boolean;
}

export interface BenchReport {
  tool: string;
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  seed: number;
  machine: ReturnType<typeof machine> & { loadAverageAtEnd?: number[] };
  git: ReturnType<typeof git>;
  services: { temporal: string; redis: string; postgres: string; rabbitmq: string };
  noise: string;
  results: ScenarioResult[];
  derived: Figure[];
}

export function parseArgs(argv: string[]): BenchOptions {
  const opts: BenchOptions = { scenarios: [], quick: false, seed: 1, updateReadme: false, progress: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') opts.quick = true;
    else if (a === '--seed') opts.seed = Number(argv[++i]);
    else if (a === '--engines') opts.engines = (argv[++i] ?? '').split(',').filter(Boolean) as EngineName[];
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--no-json') opts.out = null;
    else if (a === '--update-readme') opts.updateReadme = true;
    else if (a === '--no-progress') opts.progress = false;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        `usage: npm run bench -- [${SCENARIOS.map((s) => s.name).join('|')}...] [--quick] [--seed N] [--engines ${ENGINE_NAMES.join(',')}] [--out FILE|--no-json] [--update-readme] [--no-progress]\n` +
          SCENARIOS.map((s) => `  ${s.name.padEnd(12)} ${s.description}`).join('\n') +
          '\n' +
          `  --engines    run ceiling once on each engine: ${ENGINE_NAMES.map((e) => `${e} (${ENGINES[e].persistence})`).join(', ')}\n`,
      );
      process.exit(0);
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else opts.scenarios.push(...a.split(',').filter(Boolean));
  }
  if (!Number.isSafeInteger(opts.seed)) throw new Error('--seed takes a whole number');
  for (const name of opts.scenarios)
    if (!SCENARIOS.some((s) => s.name === name))
      throw new Error(`unknown scenario ${name}; one of ${SCENARIOS.map((s) => s.name).join(', ')}`);
  if (opts.engines) {
    if (!opts.engines.length) throw new Error(`--engines takes a list: ${ENGINE_NAMES.join(',')}`);
    for (const name of opts.engines)
      if (!ENGINE_NAMES.includes(name)) throw new Error(`unknown engine ${name}; one of ${ENGINE_NAMES.join(', ')}`);
    if (opts.scenarios.length && !opts.scenarios.includes(ceiling.name))
      throw new Error('--engines runs the ceiling scenario: name it (or no scenario, for all)');
  }
  return opts;
}

/** An engine up, with the scenarios to run on it. */
interface Leg {
  engine: EngineName;
  scenarios: Scenario[];
}

/**
 * Without `--engines`: everything on the dev server. With it: ceiling on each engine in the order
 * given, the other scenarios on the dev server (first, when `dev` is not one of the engines).
 */
function legs(chosen: Scenario[], engines: EngineName[] | undefined): Leg[] {
  if (!engines) return [{ engine: 'dev', scenarios: chosen }];
  const others = chosen.filter((s) => s !== ceiling);
  const perEngine = engines.map((engine) => ({
    engine,
    scenarios: engine === 'dev' ? [...others, ceiling] : [ceiling],
  }));
  return engines.includes('dev') || !others.length ? perEngine : [{ engine: 'dev', scenarios: others }, ...perEngine];
}

/** A ceiling result of an `--engines` run: `ceiling/<engine>`, keys `ceiling.<engine>.*`. */
function onEngine(result: ScenarioResult, engine: EngineInfo): ScenarioResult {
  const { name, server, persistence, dynamicConfig } = engine;
  return {
    ...result,
    scenario: `${result.scenario}/${name}`,
    figures: result.figures.map((f) => ({ ...f, key: f.key.replace(/^ceiling\./, `ceiling.${name}.`) })),
    engine: { name, server, persistence, dynamicConfig },
  };
}

/** A scenario that threw, or whose engine did not start. */
function failed(scenario: Scenario, err: unknown, durationMs: number): ScenarioResult {
  return {
    scenario: scenario.name,
    completed: false,
    error: err instanceof Error ? err.message : String(err),
    figures: [],
    config: {},
    details: { stack: err instanceof Error ? err.stack : undefined },
    audit: null,
    durationMs,
  };
}

/** One scenario with its CPU account; a throw is a failed result, not the end of the run. */
async function runScenario(ctx: BenchContext, scenario: Scenario): Promise<ScenarioResult> {
  const { progress } = ctx;
  progress.begin(scenario.name);
  ctx.workerPids.clear();
  const before = cpuSnapshot([], ctx.env.serverPid);
  const ticks = new Map<number, number>();
  const sampler = setInterval(() => workerTicks(ctx.workerPids, ticks), 500);
  let result: ScenarioResult;
  const t0 = Date.now();
  try {
    result = await scenario.run(ctx);
  } catch (err) {
    result = failed(scenario, err, Date.now() - t0);
  } finally {
    clearInterval(sampler);
  }
  result.cpu = cpuAccount(before, cpuSnapshot([], ctx.env.serverPid), ticks);
  progress.end();
  progress.note(
    `[bench] ${scenario.name}: ${result.completed ? 'done' : `FAILED: ${result.error}`} in ${round(result.durationMs / 1000, 1)} s` +
      (result.cpu
        ? ` (cpu s: worker ${result.cpu.worker}, temporal server ${result.cpu.devServer}, bench ${result.cpu.bench}, other ${result.cpu.other})`
        : ''),
  );
  return result;
}

export async function runBench(
  opts: BenchOptions,
): Promise<{ report: BenchReport; file: string | null; table: string }> {
  const chosen = opts.scenarios.length ? SCENARIOS.filter((s) => opts.scenarios.includes(s.name)) : SCENARIOS;
  const plan = legs(chosen, opts.engines);
  const progress = new Progress(process.stderr, opts.progress !== false);
  const config = loadConfig({ ...process.env, LOG_LEVEL: 'error' });
  const startedAt = new Date();
  const report: BenchReport = {
    tool: 'tether bench',
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    quick: opts.quick,
    seed: opts.seed,
    machine: machine(),
    git: git(ROOT),
    services: {
      temporal: plan
        .map(({ engine }) => `${engine}: ${ENGINES[engine].server}, ${ENGINES[engine].persistence}`)
        .join('; '),
      redis: `${config.redis.host}:${config.redis.port}`,
      postgres: `${config.db.host}:${config.db.port}/${config.db.name}`,
      rabbitmq: new URL(config.rabbitmq.url).host,
    },
    noise:
      'Shared machine: other people run tests on it at the same time. Each scenario records CPU seconds by ' +
      'process group (cpu.other = everything not the bench, its worker or its dev server, incl. Redis/Postgres/RabbitMQ).',
    results: [],
    derived: [],
  };

  const redis = new Redis({ host: config.redis.host, port: config.redis.port, maxRetriesPerRequest: 2 });
  const pg = createPgPool(config);
  const temp = mkdtempSync(path.join(os.tmpdir(), 'tether-bench-'));
  const bundling = bundleWorkflows(temp);
  try {
    for (const leg of plan) {
      progress.note(
        `[bench] starting the ${leg.engine} engine${leg === plan[0] ? ' and bundling workflows' : ''} (${leg.scenarios.map((s) => s.name).join(', ')})`,
      );
      const t0 = Date.now();
      const [bundles, engine] = await Promise.all([
        bundling,
        startEngine(leg.engine, { dir: temp, config, pg }).catch((err: unknown) => {
          progress.note(
            `[bench] the ${leg.engine} engine did not start: ${err instanceof Error ? err.message : String(err)}`,
          );
          return err instanceof Error ? err : new Error(String(err));
        }),
      ]);
      if (engine instanceof Error) {
        for (const scenario of leg.scenarios) {
          // One line: the message carries the server's log tail, and the tables a line per row.
          const message = `${leg.engine} engine: ${engine.message.replace(/\s*\n\s*/g, ' / ')}`;
          const result = failed(scenario, new Error(message), Date.now() - t0);
          report.results.push(opts.engines && scenario === ceiling ? onEngine(result, ENGINES[leg.engine]) : result);
        }
        continue;
      }
      const ctx: BenchContext = {
        env: {
          address: engine.address,
          namespace: NAMESPACE,
          client: engine.client,
          serverPid: engine.pid,
          persistencePids: engine.persistencePids,
        },
        redis,
        pg,
        config,
        bundles,
        quick: opts.quick,
        seed: opts.seed,
        progress,
        workerPids: new Set(),
      };
      try {
        for (const scenario of leg.scenarios) {
          const result = await runScenario(ctx, scenario);
          report.results.push(opts.engines && scenario === ceiling ? onEngine(result, engine) : result);
        }
      } finally {
        await engine.stop().catch(() => undefined);
      }
    }
  } finally {
    await bundling.then(
      (bundles) => bundles.remove(),
      () => rmSync(temp, { recursive: true, force: true }),
    );
    redis.disconnect();
    await pg.end();
  }

  const fig = (key: string) => report.results.flatMap((r) => r.figures).find((f) => f.key === key)?.value ?? null;
  const ours = fig('churn.lifecycles_per_s');
  const top = fig('ceiling.workflows_per_s') ?? fig('ceiling.dev.workflows_per_s');
  if (ours !== null && top !== null && top > 0) {
    report.derived.push({
      key: 'ratio.churn_to_ceiling',
      label: 'churn lifecycles/s ÷ ceiling workflows/s',
      value: round(ours / top, 3),
      unit: 'ratio',
      note: 'same dev server and worker settings, same run',
    });
  }
  report.finishedAt = new Date().toISOString();
  report.machine.loadAverageAtEnd = machine().loadAverage;

  const shown: ScenarioResult[] = [
    ...report.results,
    ...(report.derived.length
      ? [
          {
            scenario: 'ratio',
            completed: true,
            figures: report.derived,
            config: {},
            details: {},
            audit: null,
            durationMs: 0,
          },
        ]
      : []),
  ];
  const onEngines = report.results.filter((r) => r.engine);
  const table = textTable(shown) + (onEngines.length ? `\n\nceiling per engine:\n${engineTextTable(onEngines)}` : '');
  let file: string | null = null;
  if (opts.out !== null) {
    const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
    const names = chosen.length === SCENARIOS.length ? 'all' : chosen.map((s) => s.name).join('-');
    file =
      opts.out ??
      path.join(
        ROOT,
        'bench/results',
        `${stamp}-${names}${opts.engines ? '-engines' : ''}${opts.quick ? '-quick' : ''}.json`,
      );
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  }
  if (opts.updateReadme) await updateReadme(report, shown, file);
  return { report, file, table };
}

/**
 * Replaces the blocks of bench/README.md with this run's tables (never typed by hand): the ceiling
 * per engine in the engines block, every other scenario in a block of its own inside the results
 * block (so that a run of some scenarios leaves the latest figures of the others in place).
 */
export async function updateReadme(report: BenchReport, shown: ScenarioResult[], file: string | null): Promise<void> {
  const readme = path.join(ROOT, 'bench/README.md');
  let updated = readFileSync(readme, 'utf8');
  const onEngines = shown.filter((r) => r.engine);
  const rest = shown.filter((r) => !r.engine);
  for (const scenario of [...new Set(rest.map((r) => r.scenario.split('/')[0]!))]) {
    const mine = rest.filter((r) => r.scenario.split('/')[0] === scenario);
    updated = replaceBlock(updated, `results:${scenario}`, [runLine(report, mine, file), '', markdownTable(mine)]);
  }
  if (onEngines.length)
    updated = replaceBlock(updated, 'engines', [runLine(report, onEngines, file), '', engineMarkdown(onEngines)]);
  // Formatted as `npm run lint` (prettier --check) wants it; a dev dependency, so best effort.
  try {
    const prettier = await import('prettier');
    const options = (await prettier.resolveConfig(readme)) ?? {};
    updated = await prettier.format(updated, { ...options, filepath: readme });
  } catch {
    // unformatted is still correct
  }
  writeFileSync(readme, updated);
}

/**
 * `text` with what lies between `<!-- name:start -->` and `<!-- name:end -->` replaced by `lines`;
 * a `results:{scenario}` block not there yet is added at the end of the results block.
 */
function replaceBlock(text: string, name: string, lines: string[]): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = [start, '', ...lines, '', end].join('\n');
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) return text.slice(0, i) + block + text.slice(j + end.length);
  const container = '<!-- results:end -->';
  const k = text.indexOf(container);
  if (!name.startsWith('results:') || k < 0) throw new Error(`bench/README.md has no ${start} … ${end} block`);
  return `${text.slice(0, k)}${block}\n\n${text.slice(k)}`;
}

/** When, on what, and how busy the machine was around these results. */
function runLine(report: BenchReport, results: ScenarioResult[], file: string | null): string {
  const m = report.machine;
  const cpu = results
    .filter((r) => r.cpu)
    .map((r) => `${r.scenario} ${r.cpu!.other} s of ${r.cpu!.wallSeconds} s wall (${r.cpu!.machineBusyPct}% busy)`)
    .join('; ');
  return (
    `Run of ${report.startedAt} (${report.quick ? 'quick' : 'full'}), commit ${report.git.commit?.slice(0, 10) ?? 'unknown'}` +
    `${report.git.dirty ? ' with uncommitted changes' : ''}; ${m.cpus} × ${m.cpuModel}, ` +
    `${round(m.memoryBytes / 2 ** 30, 1)} GiB, Node ${m.node}; load average ${m.loadAverage.join(' ')} at start. ` +
    `CPU used by other processes during each scenario: ${cpu}.` +
    (file ? ` JSON: \`${path.relative(path.join(ROOT, 'bench'), file)}\`.` : '')
  );
}

if (require.main === module) {
  let opts: BenchOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  // Worker and server chatter off; warnings still show.
  void import('@temporalio/worker').then(({ DefaultLogger, Runtime }) => {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runBench(opts).then(
      ({ table, file, report }) => {
        process.stdout.write('\n' + table + '\n');
        if (file) process.stdout.write(`\nJSON: ${path.relative(process.cwd(), file)}\n`);
        const failed = report.results.filter((r) => !r.completed || (r.audit && !r.audit.clean));
        if (failed.length) process.exitCode = 1;
      },
      (err: unknown) => {
        process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        process.exit(1);
      },
    );
  });
}

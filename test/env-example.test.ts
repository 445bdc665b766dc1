import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/config';

const ROOT = path.resolve(__dirname, '..');

/** NAME=value lines of .env.example (comments and blank lines skipped). */
function envExample(): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(path.join(ROOT, '.env.example'), 'utf8').split('\n')) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) vars[m[1]!] = m[2]!;
  }
  return vars;
}

/** Every variable name src/config.ts reads: `env.NAME` and the name argument of its readers. */
function configVariables(): string[] {
  const source = readFileSync(path.join(ROOT, 'src/config.ts'), 'utf8');
  const names = new Set<string>();
  for (const m of source.matchAll(/env\.([A-Z][A-Z0-9_]*)/g)) names.add(m[1]!);
  for (const m of source.matchAll(/\b(?:str|int|bool|oneOf|url|hostPort)\(env, '([A-Z][A-Z0-9_]*)'/g)) names.add(m[1]!);
  return [...names].sort();
}

describe('.env.example agrees with src/config.ts', () => {
  test('it lists exactly the variables the config reads', () => {
    expect(Object.keys(envExample()).sort()).toEqual(configVariables());
  });

  test('its values are the defaults: loading it gives the config of an empty environment', () => {
    expect(loadConfig(envExample())).toEqual(loadConfig({}));
  });

  test('docker-compose.yml sets the worker no variable the config does not read', () => {
    const compose = readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');
    const worker = compose.slice(compose.indexOf('\n  worker:'));
    const set = [...worker.matchAll(/^ {6}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    expect(set.length).toBeGreaterThan(5);
    const read = new Set(configVariables());
    expect(set.filter((name) => !read.has(name))).toEqual([]);
  });

  test('no variable is described as unused or ignored', () => {
    const text = readFileSync(path.join(ROOT, '.env.example'), 'utf8');
    expect(text).not.toMatch(/\bunused\b|\bignored\b/i);
    expect(text).toMatch(/Period in minutes of the stale-session sweep/);
  });
});

/**
 * `npm run pack:client`: the gateway's package. Compiles src/client and what it imports
 * (src/contracts/: session.ts, gateway.ts, search-attributes.ts, …) to JavaScript with type
 * declarations in dist/client-package/lib, keeps only the files `tether/client` reaches, writes a
 * package.json whose `exports` give `tether/client` and whose dependencies are exactly the packages
 * that compiled code requires (versions from this repo's package.json), then `npm pack`s it into
 * dist/. Prints the tarball's path. The gateway installs that file: `npm install ./tether-0.1.0.tgz`.
 */
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
export const PACKAGE_DIR = path.join(DIST, 'client-package');
const LIB = path.join(PACKAGE_DIR, 'lib');
const ENTRY = 'client/index';

interface RootManifest {
  name: string;
  version: string;
  description?: string;
  license?: string;
  engines?: Record<string, string>;
  dependencies: Record<string, string>;
}

/** Relative and bare module specifiers of one emitted .js or .d.ts file. */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  const patterns = [
    /\brequire\(\s*["']([^"']+)["']\s*\)/g,
    /\b(?:import|export)\s[^;'"]*?\bfrom\s*["']([^"']+)["']/g,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
    /^\s*import\s+["']([^"']+)["']/gm,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) found.push(m[1]!);
  return found;
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/**
 * The files reachable from the entry through relative imports (`ext` .js: what runs; .d.ts: what
 * the types need), and the packages they name.
 */
function closure(ext: '.js' | '.d.ts'): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [path.join(LIB, `${ENTRY}${ext}`)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const spec of specifiers(file)) {
      if (spec.startsWith('node:')) continue;
      if (!spec.startsWith('.')) {
        packages.add(packageName(spec));
        continue;
      }
      const base = path.resolve(path.dirname(file), spec);
      const candidates = [`${base}${ext}`, path.join(base, `index${ext}`)];
      const hit = candidates.find((c) => existsSync(c));
      if (!hit) throw new Error(`${path.relative(LIB, file)}: cannot resolve ${spec}`);
      queue.push(hit);
    }
  }
  return { files, packages };
}

function prune(dir: string, keep: Set<string>): void {
  for (const entry of readdirRecursive(dir)) if (!keep.has(entry)) rmSync(entry);
}

function readdirRecursive(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? readdirRecursive(full) : [full];
  });
}

function removeEmptyDirs(dir: string): void {
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) removeEmptyDirs(full);
  }
  if (readdirSync(dir).length === 0) rmdirSync(dir);
}

export function packClient(): { tarball: string; manifest: Record<string, unknown> } {
  const root = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as RootManifest;
  rmSync(PACKAGE_DIR, { recursive: true, force: true });
  mkdirSync(PACKAGE_DIR, { recursive: true });
  execFileSync(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', path.join(ROOT, 'tsconfig.client.json')], {
    cwd: ROOT,
    stdio: 'inherit',
  });

  const runtime = closure('.js');
  const types = closure('.d.ts');
  prune(LIB, new Set([...runtime.files, ...types.files]));
  removeEmptyDirs(LIB);

  // Only what the compiled client requires at run time; types-only packages would be a mistake here.
  const dependencies = Object.fromEntries(
    [...runtime.packages].sort().map((name) => {
      const version = root.dependencies[name];
      if (!version) throw new Error(`the client requires ${name}, which is not a dependency in package.json`);
      return [name, version];
    }),
  );
  const typesOnly = [...types.packages].filter((p) => !runtime.packages.has(p));
  if (typesOnly.length > 0) {
    throw new Error(`the client's declarations name packages it does not depend on: ${typesOnly.join(', ')}`);
  }

  const manifest = {
    name: root.name,
    version: root.version,
    description: 'tether session client: what a RelayBox gateway drives session workflows with',
    license: root.license,
    engines: root.engines,
    exports: {
      './client': { types: `./lib/${ENTRY}.d.ts`, default: `./lib/${ENTRY}.js` },
      './package.json': './package.json',
    },
    // TypeScript with moduleResolution "node" (node10) ignores exports: point it at the same file.
    typesVersions: { '*': { client: [`lib/${ENTRY}.d.ts`] } },
    files: ['lib'],
    dependencies,
  };
  writeFileSync(path.join(PACKAGE_DIR, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  cpSync(path.join(ROOT, 'packaging/client/README.md'), path.join(PACKAGE_DIR, 'README.md'));

  const out = execFileSync('npm', ['pack', '--pack-destination', DIST, '--json'], {
    cwd: PACKAGE_DIR,
    encoding: 'utf8',
  });
  const [{ filename }] = JSON.parse(out) as [{ filename: string }];
  return { tarball: path.join(DIST, filename), manifest };
}

if (require.main === module) {
  try {
    const { tarball } = packClient();
    process.stdout.write(`${path.relative(process.cwd(), tarball)}\n`);
  } catch (err) {
    process.stderr.write(`pack:client: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

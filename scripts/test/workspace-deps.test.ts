import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Workspace {
  dir: string;
  name: string;
  deps: Set<string>;
  devDeps: Set<string>;
  references: Set<string>;
}

function workspaces(): Workspace[] {
  const dirs = [
    ...readdirSync(join(ROOT, 'libs')).map((d) => join(ROOT, 'libs', d)),
    ...readdirSync(join(ROOT, 'services')).map((d) => join(ROOT, 'services', d)),
    join(ROOT, 'e2e'),
    join(ROOT, 'bench'),
  ];
  const names = new Map<string, string>();
  const all = dirs.map((dir) => {
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      name: string;
      dependencies?: Record<string, string>;
      devDependencies?: Record<string, string>;
    };
    names.set(dir, pj.name);
    const tsconfig = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8')) as {
      references?: { path: string }[];
    };
    return {
      dir,
      name: pj.name,
      deps: new Set(Object.keys(pj.dependencies ?? {})),
      devDeps: new Set(Object.keys(pj.devDependencies ?? {})),
      references: new Set((tsconfig.references ?? []).map((r) => join(dir, r.path))),
    };
  });
  // References as package names.
  for (const w of all) w.references = new Set([...w.references].map((d) => names.get(d) ?? d));
  return all;
}

function sources(dir: string): string[] {
  let out: string[] = [];
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist') continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out = out.concat(sources(path));
    else if (/\.(ts|mjs|js)$/.test(entry) && !entry.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** `@va/…` packages a set of files imports (static and dynamic). */
function workspaceImports(files: string[]): Set<string> {
  const found = new Set<string>();
  for (const file of files) {
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from |import\()\s*'(@va\/[a-z0-9-]+)'/g)) found.add(m[1]!);
  }
  return found;
}

describe('workspace dependencies', () => {
  const all = workspaces();

  it('every @va package a source imports is a dependency and a tsconfig reference; a test’s at least a dev one', () => {
    const problems: string[] = [];
    for (const w of all) {
      const where = relative(ROOT, w.dir);
      const dirOf = (sub: string) => sources(join(w.dir, sub)).filter(Boolean);
      const src = (() => {
        try {
          return workspaceImports(dirOf('src'));
        } catch {
          return new Set<string>();
        }
      })();
      const test = (() => {
        try {
          return workspaceImports(dirOf('test'));
        } catch {
          return new Set<string>();
        }
      })();
      for (const dep of src) {
        if (dep === w.name) continue;
        if (!w.deps.has(dep)) problems.push(`${where}: src imports ${dep}, not in dependencies`);
        if (!w.references.has(dep)) problems.push(`${where}: src imports ${dep}, not in tsconfig references`);
      }
      for (const dep of test) {
        if (dep !== w.name && !w.deps.has(dep) && !w.devDeps.has(dep)) {
          problems.push(`${where}: test imports ${dep}, not in (dev)dependencies`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('no lib imports a service or the end-to-end layer, and no service imports another', () => {
    const problems: string[] = [];
    for (const w of all) {
      const where = relative(ROOT, w.dir);
      let files: string[] = [];
      try {
        files = sources(join(w.dir, 'src'));
      } catch {
        continue;
      }
      for (const file of files) {
        const text = readFileSync(file, 'utf8');
        if (where.startsWith('libs/') && /from '(@va\/e2e|[./]+\/services\/)/.test(text))
          problems.push(relative(ROOT, file));
        if (where.startsWith('services/') && /from '[./]+\/(\.\.\/)?services\//.test(text))
          problems.push(relative(ROOT, file));
      }
    }
    expect(problems).toEqual([]);
  });
});

// The layering of src/ as the source files say it, read with the TypeScript compiler: server/ (the HTTP
// framework base) imports nothing above it, no module finds another through a registry keyed by the node
// (a WeakMap on the app or the context, getters such as getJobs, metricsOf or getPeers), and no file of
// code is longer than MAX_FILE_LINES (functions are bounded by the linter: noExcessiveLinesPerFunction).
import assert from 'node:assert/strict';
import { type Dirent, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';
import ts from 'typescript';

const SRC = resolve(import.meta.dirname, '..', '..', 'src');
/** Longest a source file may be, in lines. */
const MAX_FILE_LINES = 600;
/** Files written by a program, not by hand. */
const GENERATED = new Set(['src/dicom/dictionary.ts']);
/** What counts as code for the length rule. */
const CODE = /\.(ts|js|mjs|css|html)$/;

/** Every .ts file under `dir`, as absolute paths, sorted. */
function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.isFile() && e.name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** Every file of code under `dir` (none when it does not exist). */
function codeFiles(dir: string): string[] {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...codeFiles(p));
    else if (e.isFile() && CODE.test(e.name)) out.push(p);
  }
  return out;
}

/** A path under src/, with forward slashes (`server/http.ts`). */
function srcPath(abs: string, root = SRC): string {
  return relative(root, abs).split(sep).join('/');
}

/** What server/ may import from src/: itself and the leaves below it. */
function allowedForServer(target: string): boolean {
  return (
    target.startsWith('server/') ||
    target.startsWith('util/') ||
    target === 'errors.ts' ||
    target === 'version.ts' ||
    target === 'config/types.ts'
  );
}

/** The src/ files a file imports (static imports, re-exports and dynamic imports), as paths under src/. */
function importsOf(file: string, root = SRC): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => srcPath(resolve(dirname(file), name), root));
}

/** The parts of a node that a registry would hand out. */
const PART = '(Jobs|Peers|Metrics|Engine|Receiver|TransfersServer|Chunks|ForeignJobs|ForeignMetrics)';
/** Names of registry getters and setters: getJobs, metricsOf, getPeers, attachPeers, setForeignJobs... */
const REGISTRY_NAME = new RegExp(`^((get|set|attach)${PART}|(jobs|peers|metrics|engine|receiver|transfersServer|chunks)Of)$`);
/** Types of what a node is keyed by in a registry. */
const NODE_KEY = /^(NodeContext|FastifyInstance|HttpApp|NodeApp)$/;

interface Finding {
  file: string;
  line: number;
  what: string;
}

/** WeakMaps keyed by the node, and functions named like registry getters, declared in `file`. */
function registriesIn(file: string, root = SRC): Finding[] {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Finding[] = [];
  const at = (node: ts.Node, what: string) =>
    found.push({ file: srcPath(file, root), line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, what });
  const visit = (node: ts.Node): void => {
    if (ts.isNewExpression(node) && node.expression.getText(sf) === 'WeakMap') {
      const key = node.typeArguments?.[0]?.getText(sf);
      if (key !== undefined && NODE_KEY.test(key)) at(node, `a WeakMap keyed by ${key}`);
    }
    let name: string | undefined;
    if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node)) && node.name) name = node.name.getText(sf);
    if (
      ts.isVariableDeclaration(node) &&
      node.initializer &&
      (ts.isArrowFunction(node.initializer) || ts.isFunctionExpression(node.initializer))
    ) {
      name = node.name.getText(sf);
    }
    if (name !== undefined && REGISTRY_NAME.test(name)) at(node, `a function named ${name}`);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

describe('layering of src/', () => {
  test('server/ imports only itself, util/, errors.ts, version.ts and config/types.ts from src/', () => {
    const files = sourceFiles(join(SRC, 'server'));
    assert.ok(files.length >= 5, `server/ holds its files (found ${files.length})`);
    const wrong: string[] = [];
    for (const f of files) {
      for (const target of importsOf(f)) if (!allowedForServer(target)) wrong.push(`${srcPath(f)} imports ${target}`);
    }
    assert.deepEqual(wrong, [], `server/ reaches above the HTTP framework:\n${wrong.join('\n')}`);
  });

  test('no module reaches another through a registry keyed by the node', () => {
    const files = sourceFiles(SRC);
    assert.ok(files.length > 50, `src/ holds its files (found ${files.length})`);
    const found = files.flatMap((f) => registriesIn(f)).map((f) => `${f.file}:${f.line}: ${f.what}`);
    assert.deepEqual(found, [], `registries found:\n${found.join('\n')}`);
  });

  test('the checks find a registry and an upward import in files that have them', async () => {
    // The old shapes, written to a scratch tree laid out as src/: each must be reported.
    const root = await mkdtemp(join(tmpdir(), 'dx-layering-'));
    try {
      await mkdir(join(root, 'server'));
      const app = join(root, 'server', 'app.ts');
      await writeFile(
        app,
        [
          "import type { Store } from '../store/types.ts';",
          "import { capabilitiesDocument } from '../transfer/capabilities.ts';",
          "import { route } from './http.ts';",
          "import { XferError } from '../errors.ts';",
          'export interface NodeContext { store: Store }',
          'const byContext = new WeakMap<NodeContext, object>();',
          'export function getPeers(ctx: NodeContext) { return byContext.get(ctx); }',
          'export const metricsOf = (ctx: NodeContext) => byContext.get(ctx);',
          'export function embeddedApiOf(store: Store) { return store; }',
          '',
        ].join('\n'),
      );
      assert.deepEqual(
        importsOf(app, root).filter((t) => !allowedForServer(t)),
        ['store/types.ts', 'transfer/capabilities.ts'],
      );
      assert.deepEqual(
        registriesIn(app, root).map((f) => `${f.line}: ${f.what}`),
        ['6: a WeakMap keyed by NodeContext', '7: a function named getPeers', '8: a function named metricsOf'],
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test(`no file of code over ${MAX_FILE_LINES} lines but the generated dictionary`, () => {
    const repo = resolve(SRC, '..');
    const files = ['src', 'test', 'bench', 'web', 'scripts'].flatMap((d) => codeFiles(join(repo, d)));
    assert.ok(files.length > 200, `${files.length} files found`);
    const long = files
      .map((f) => ({ file: srcPath(f, repo), lines: readFileSync(f, 'utf8').split('\n').length - 1 }))
      .filter((f) => !GENERATED.has(f.file) && f.lines > MAX_FILE_LINES);
    assert.deepEqual(long, [], 'split these files by role');
  });
});

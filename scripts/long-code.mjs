import ts from 'typescript';
import { readFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
const files = execSync("git ls-files 'services/*/src/**.ts' 'libs/*/src/**.ts' 'services/*/src/*.ts' 'libs/*/src/*.ts'")
  .toString()
  .trim()
  .split('\n')
  .filter((f, i, a) => a.indexOf(f) === i);
const out = [];
for (const f of files) {
  const text = readFileSync(f, 'utf8');
  const lines = text.split('\n').length;
  if (lines > 300) out.push(`FILE ${lines} ${f}`);
  const sf = ts.createSourceFile(f, text, ts.ScriptTarget.Latest, true);
  const visit = (n) => {
    if (ts.isFunctionLike(n) && n.body) {
      const s = sf.getLineAndCharacterOfPosition(n.getStart()).line,
        e = sf.getLineAndCharacterOfPosition(n.end).line;
      if (e - s + 1 > 80) out.push(`FN ${e - s + 1} ${f}:${s + 1} ${n.name?.getText?.() ?? '(anon)'}`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
}
console.log(out.sort().join('\n'));

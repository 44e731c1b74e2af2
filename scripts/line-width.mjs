// Fails when a line of the project's code is longer than the formatter's width (biome.json): the formatter
// wraps what it can, and this catches what it cannot (long strings, comments, regular expressions).
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const width = JSON.parse(readFileSync(new URL('../biome.json', import.meta.url), 'utf8')).formatter.lineWidth;
const GENERATED = new Set(['src/dicom/dictionary.ts']);
const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard', '*.ts', '*.mjs', '*.js', '*.css', '*.html', '*.json'], {
  encoding: 'utf8',
})
  .split('\n')
  .filter((f) => f !== '' && !GENERATED.has(f) && !f.startsWith('web/vendor/') && f !== 'package-lock.json');
let over = 0;
for (const f of files) {
  let text;
  try {
    text = readFileSync(f, 'utf8');
  } catch {
    continue; // listed by git but deleted in the work tree
  }
  text.split('\n').forEach((line, i) => {
    if ([...line].length > width) {
      over++;
      console.error(`${f}:${i + 1}: ${[...line].length} characters (the width is ${width})`);
    }
  });
}
if (over > 0) {
  console.error(`${over} line(s) over ${width} characters`);
  process.exit(1);
}

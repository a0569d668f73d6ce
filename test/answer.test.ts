// Answer extraction and normalization (lib/data/answer.ts): the paper's 7,000-row conformance file,
// unit cases for each step of method.md §3 with Python's string/regex semantics, and the symbolic mode.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { check, checkSymbolic, extractAnswer, GSM8K_ANSWER_KEY, MATH_ANSWER_KEY, normalizeAnswer, predOf } from '../lib/data/answer.js';
import { pyIsDigit, pyStrip } from '../lib/data/pystr.js';
import { dataTest, GSM8K_PAPER, readJsonl } from './helpers/shared-data.js';

interface ResultRow { id: number; prompt: string; response: string; pred: string; gold: string; result: boolean }

dataTest('reproduces pred, gold and result of all 7,000 paper-scored weak responses', (t) => {
  const rows = readJsonl<ResultRow>(GSM8K_PAPER, 'weak_zero_shot_train_2.results.jsonl');
  const train2 = readJsonl<{ question: string; answer: string }>('gsm8k/train_2.jsonl');
  t.is(rows.length, train2.length);
  const mismatches: string[] = [];
  rows.forEach((row, i) => {
    t.is(row.prompt, `Question: ${train2[i]!.question}\nAnswer:`); // results ids are train_2 positions
    const rawGold = train2[i]!.answer.split('#### ').pop()!;
    const got = check(row.response, rawGold, GSM8K_ANSWER_KEY);
    if (got.pred !== row.pred || got.correct !== row.result || got.gold !== row.gold) {
      mismatches.push(`id ${row.id}: pred ${JSON.stringify(got.pred)} vs ${JSON.stringify(row.pred)}, result ${got.correct} vs ${row.result}, gold ${JSON.stringify(got.gold)} vs ${JSON.stringify(row.gold)}`);
    }
  });
  t.log(`conformance: ${mismatches.length} mismatches out of ${rows.length}`);
  for (const m of mismatches.slice(0, 5)) t.log(m);
  t.is(mismatches.length, 0);
  t.is(rows.length, 7000);
});

const extractCases: Array<[string, string, string]> = [
  ['Step one.\n#### 5\nQuestion: next\n#### 7', '####', '5'], // cut at the first "Question"
  ['#### 5\nso that is it', '####', ''], // the key must be on the last line
  ['#### 5 #### 6', '####', '5 #### 6'], // capture is the rest of the line
  ['x\n#### 5\u20286', '####', '5\u20286'], // Python "." matches U+2028 (JS "." does not)
  ['#### 7\r', '####', '7'],
  ['#### 5\ufeff', '####', '5\ufeff'], // Python strip() keeps U+FEFF (JS trim() drops it)
  ['\x1c#### 5\x1c', '####', '5'], // … and drops U+001C (JS trim() keeps it)
  ['Answer: #### 8 \u00a0\x85', '####', '8'],
  ['The answer is 1,234.5.', '####', '1234.5'], // fallback: first number, commas removed, final "." dropped
  ['so The answer is -3 apples', '####', '-3'],
  ['The answer is \u0663\u0664', '####', '\u0663\u0664'], // Python \d is any Unicode decimal digit
  ['#### 12</s>', '####', '12'],
  ['#### 1</s>2', '####', '1<'], // the original drops the last 4 characters wherever </s> is
  ['The answer is: 3\nThe answer is: 4', MATH_ANSWER_KEY, '4'],
];

for (const [response, key, want] of extractCases) {
  test(`extractAnswer(${JSON.stringify(response)})`, (t) => t.is(extractAnswer(response, key), want));
}

const normalizeCases: Array<[string, string]> = [
  ['850,000', '850000'], ['3.0', '3'], ['-3.0', '-3.0'], ['3.00', '3'], ['50%', '50'], ['\\$5', '5'], ['x = 5', '5'],
  ['\\boxed{\\frac{1}{2}}', '\\frac{1}{2}'], ['\\frac12', '\\frac{1}{2}'], ['\\sqrt2', '\\sqrt{2}'], ['B', 'b'],
  ['5 dollars', '5'], ['\\text{(A)}', '(A)'], ['1,000\u00b2', '1000\u00b2'], ['frac\u{1F600}1', 'frac{\u{1F600}}{1}'],
  ['12.50', '12.50'], ['\\$1,000.00', '1,000.00'], ['10^\\circ', '10'], ['\\textbf{7}', '7'], ['a $1$ b $2$', '1'],
  ['\\text{and} 3', '3'], ['an apple', 'apple'], ['5 \\%', '5'],
];

for (const [raw, want] of normalizeCases) {
  test(`normalizeAnswer(${JSON.stringify(raw)})`, (t) => t.is(normalizeAnswer(raw), want));
}

test('Python str semantics: strip and isdigit', (t) => {
  t.is(pyStrip('\x1c\x85 a \ufeff'), 'a \ufeff');
  t.is(pyStrip('..a.b..', '.'), 'a.b');
  t.true(pyIsDigit('12\u00b2\u0663'));
  t.false(pyIsDigit(''));
  t.false(pyIsDigit('1.5'));
});

test('check compares normalized strings', (t) => {
  t.deepEqual(check('So 2 + 3 = 5.\n#### 5', '5.0', GSM8K_ANSWER_KEY), { correct: true, pred: '5', gold: '5' });
  t.deepEqual(check('The answer is: 0.5', '\\frac{1}{2}', MATH_ANSWER_KEY), { correct: false, pred: '0.5', gold: '\\frac{1}{2}' });
  t.is(predOf('no answer here', GSM8K_ANSWER_KEY), '');
});

test('bad keys are refused with InvalidArgumentError', (t) => {
  const empty = t.throws(() => extractAnswer('#### 1', ''));
  t.is((empty as Error & { code: string }).code, 'ERR_W2S_INVALID_ARGUMENT');
  t.throws(() => extractAnswer('#### 1', '(#)###'), { message: /without capture groups/ });
});

test('symbolic mode: LaTeX-aware equivalence, off by default', async (t) => {
  const math = (ans: string) => `We compute it. The answer is: ${ans}`;
  for (const [pred, gold] of [['0.50', '0.5'], ['0.5', '\\frac{1}{2}'], ['\\sqrt{4}', '2'], ['2\\sqrt{2}', '\\sqrt{8}']] as const) {
    t.true((await checkSymbolic(math(pred), gold, MATH_ANSWER_KEY)).correct, `${pred} = ${gold}`);
  }
  t.false(check(math('\\sqrt{4}'), '2', MATH_ANSWER_KEY).correct);
  t.false((await checkSymbolic(math('3'), '4', MATH_ANSWER_KEY)).correct);
  t.false((await checkSymbolic(math('\\frac{1}{3}'), '0.333', MATH_ANSWER_KEY)).correct);
  t.false((await checkSymbolic('no answer', '0', MATH_ANSWER_KEY)).correct);
});

test('the default path does not import the compute engine', (t) => {
  const compiled = readFileSync(fileURLToPath(new URL('../lib/data/answer.js', import.meta.url)), 'utf8');
  t.false(/^import[^;]*(compute-engine|symbolic)/m.test(compiled));
  t.true(compiled.includes("import('./symbolic.js')"));
});

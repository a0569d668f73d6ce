// Dataset loaders, prompt templates, few-shot prompts, demo selection and response post-processing
// (lib/data/datasets.ts), on the shared GSM8K/MATH files and on small malformed inputs.

import test from 'ava';
import { check, GSM8K_ANSWER_KEY, MATH_ANSWER_KEY } from '../lib/data/answer.js';
import {
  buildFewShotPrompt, DEFAULT_PROMPT_TEMPLATE, formatPrompt, loadProblems, parseGsm8k, parseJsonlProblems, parseMath,
  postprocessResponse, selectDemos, stripCalculatorAnnotations,
} from '../lib/data/datasets.js';
import { DataFormatError } from '../lib/data/errors.js';
import { dataPath, dataTest, GSM8K_PAPER, readJsonl } from './helpers/shared-data.js';

dataTest('GSM8K train files: ids, annotation-free targets whose answer is the gold', async (t) => {
  for (const split of ['train_1', 'train_2']) {
    const problems = await loadProblems(dataPath(`gsm8k/${split}.jsonl`), 'gsm8k');
    const raw = readJsonl<{ id: string; answer: string }>(`gsm8k/${split}.jsonl`);
    t.is(problems.length, raw.length);
    t.deepEqual(problems.map((p) => p.id), raw.map((r) => r.id));
    t.true(problems.every((p) => !/<<|>>/.test(p.target!)), 'no calculator annotation left');
    const wrong = problems.filter((p) => !check(p.target!, p.gold!, GSM8K_ANSWER_KEY).correct);
    t.deepEqual(wrong.map((p) => p.id), [], `${split}: gold targets must score correct`);
  }
});

dataTest('GSM8K index ids line up with the paper result file prompts', async (t) => {
  const problems = await loadProblems(dataPath('gsm8k/train_2.jsonl'), 'gsm8k', { ids: 'index' });
  const results = readJsonl<{ id: number; prompt: string }>(GSM8K_PAPER, 'weak_zero_shot_train_2.results.jsonl');
  const byId = new Map(problems.map((p) => [p.id, p]));
  const misaligned = results.filter((r) => formatPrompt(byId.get(r.id)!.question) !== r.prompt);
  t.is(misaligned.length, 0);
});

dataTest('GSM8K test file (solution + final answer shape) and MATH500', async (t) => {
  const gsm = await loadProblems(dataPath('gsm8k/test.jsonl'), 'gsm8k');
  const rawGsm = readJsonl<{ answer: string }>('gsm8k/test.jsonl');
  t.deepEqual(gsm.map((p) => p.id), rawGsm.map((_r, i) => i));
  t.deepEqual(gsm.map((p) => p.gold), rawGsm.map((r) => r.answer));
  // The paper's checker cuts a response at its first "Question": a gold solution mentioning "Questions"
  // then scores wrong. That is the only way a gold target may fail.
  const wrong = gsm.filter((p) => !check(p.target!, p.gold!, GSM8K_ANSWER_KEY).correct);
  t.log(`GSM8K test: ${wrong.length} gold targets score wrong, ids ${wrong.map((p) => p.id).join(', ')}`);
  t.true(wrong.every((p) => p.target!.includes('Question')));
  t.true(wrong.length < 5);

  const math = await loadProblems(dataPath('math/test.jsonl'), 'math');
  const rawMath = readJsonl<{ problem: string; solution: string; answer: string }>('math/test.jsonl');
  t.is(math.length, rawMath.length);
  t.deepEqual(math.map((p) => p.target), rawMath.map((r) => `${r.solution} The answer is: ${r.answer}`));
  t.deepEqual(math.map((p) => p.question), rawMath.map((r) => r.problem));
  t.is(math.filter((p) => !check(p.target!, p.gold!, MATH_ANSWER_KEY).correct).length, 0);
});

test('malformed files raise DataFormatError with the line number', (t) => {
  const bad = (fn: () => unknown) => t.throws(fn, { instanceOf: DataFormatError }) as DataFormatError;
  const e1 = bad(() => parseGsm8k('{"question":"q","answer":"#### 1"}\n\n{"question": oops}\n', 'f.jsonl'));
  t.is(e1.line, 3);
  t.is(e1.code, 'ERR_W2S_DATA_FORMAT');
  t.regex(e1.message, /Invalid JSON.*\(f\.jsonl:3\)$/);
  const e2 = bad(() => parseGsm8k('{"question":"q","answer":"#### 1"}\n{"answer":"#### 2"}\n'));
  t.is(e2.line, 2);
  t.regex(e2.message, /Missing field "question"/);
  t.regex(bad(() => parseGsm8k('{"question":"q","answer":"no final line"}')).message, /#### <final answer>/);
  t.regex(bad(() => parseMath('{"problem":"p","solution":"s"}')).message, /Missing field "answer"/);
  t.regex(bad(() => parseMath('{"problem":"p","solution":7,"answer":"1"}')).message, /Expected a string for field "solution"/);
  t.is(bad(() => parseGsm8k('{"id":1,"question":"q","answer":"#### 1"}\n{"id":1,"question":"r","answer":"#### 2"}')).message, 'Duplicate id 1 (first on line 1) (line 2)');
  t.regex(bad(() => parseGsm8k('[1]')).message, /Expected a JSON object/);
});

test('GSM8K targets strip <<…>> and MATH targets append the answer key', (t) => {
  t.is(stripCalculatorAnnotations('48/2 = <<48/2=24>>24 and <<a\nb>>'), '48/2 = 24 and <<a\nb>>');
  const [g] = parseGsm8k('{"question":"Q?","answer":"2*3=<<2*3=6>>6\\n#### 6"}');
  t.deepEqual(g, { id: 0, question: 'Q?', target: '2*3=6\n#### 6', gold: '6' });
  const [m] = parseMath('{"question":"P?","solution":"It is $\\\\boxed{2}$.","answer":2,"id":"m1"}');
  t.deepEqual(m, { id: 'm1', question: 'P?', target: 'It is $\\boxed{2}$. The answer is: 2', gold: '2' });
});

test('generic JSONL with a field mapping', (t) => {
  const text = '{"uid":"a","q":"One?","sol":"1","ans":1}\n{"uid":"b","q":"Two?","sol":"2","ans":"2"}\n';
  const got = parseJsonlProblems(text, { id: 'uid', question: 'q', target: 'sol', gold: 'ans' });
  t.deepEqual(got, [{ id: 'a', question: 'One?', target: '1', gold: '1' }, { id: 'b', question: 'Two?', target: '2', gold: '2' }]);
  t.deepEqual(parseJsonlProblems('{"question":"x"}').map((p) => p.id), [0]);
  t.throws(() => parseJsonlProblems('{"q":"x"}', { id: 'uid', question: 'q' }), { instanceOf: DataFormatError, message: /Missing field "uid"/ });
  t.throws(() => parseJsonlProblems(text, { question: 'q', gold: 'missing' }), { instanceOf: DataFormatError, message: /Missing field "missing".*line 1/ });
});

test('prompt template and few-shot prompt', (t) => {
  t.is(DEFAULT_PROMPT_TEMPLATE, 'Question: {question}\nAnswer:');
  t.is(formatPrompt('What is 1+1?'), 'Question: What is 1+1?\nAnswer:');
  const demos = [{ question: 'A?', answer: 'a\n#### 1' }, { question: 'B?', answer: 'b\n#### 2' }];
  t.is(buildFewShotPrompt('C?', demos), 'Question: A?\nAnswer: a\n#### 1\n\nQuestion: B?\nAnswer: b\n#### 2\n\nQuestion: C?\nAnswer:');
  t.is(buildFewShotPrompt('C?', []), formatPrompt('C?'));
  t.is(formatPrompt('x', 'Q: {question}\nA:'), 'Q: x\nA:');
  t.throws(() => formatPrompt('x', 'no placeholder'), { message: /Expected a template containing/ });
});

test('demo selection: seeded random and given ids', (t) => {
  const pool = Array.from({ length: 50 }, (_, i) => ({ id: i, question: `q${i}`, answer: `a${i}` }));
  const a = selectDemos(pool, { strategy: 'random', k: 4, seed: 42 });
  t.deepEqual(selectDemos(pool, { strategy: 'random', k: 4, seed: 42 }), a, 'same seed, same demos');
  t.is(new Set(a.map((d) => d.id)).size, 4);
  const seeds = [1, 2, 3, 4, 5].map((seed) => selectDemos(pool, { strategy: 'random', k: 4, seed }).map((d) => d.id).join());
  t.true(new Set(seeds).size > 1, 'different seeds give different demos');
  const excluded = selectDemos(pool, { strategy: 'random', k: 45, seed: 7, exclude: [0, 1, 2, 3, 4] });
  t.false(excluded.some((d) => d.id < 5));
  t.deepEqual(selectDemos(pool, { strategy: 'ids', ids: [7, 3] }).map((d) => d.id), [7, 3]);
  t.throws(() => selectDemos(pool, { strategy: 'ids', ids: [99] }), { message: /Expected an id present/ });
  t.throws(() => selectDemos(pool, { strategy: 'random', k: 51, seed: 1 }), { message: /Expected an integer in \[0, 50\] for k/ });
});

test('response post-processing: strip, then strip leading/trailing dots', (t) => {
  t.is(postprocessResponse('  ..The answer is 5.. \n'), 'The answer is 5');
  t.is(postprocessResponse(' . x . '), ' x ');
  t.is(postprocessResponse('\n#### 72\n'), '#### 72');
});

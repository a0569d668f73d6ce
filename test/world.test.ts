// The toy world's problem generator: deterministic, arithmetically right, disjoint splits, and readable by
// the method's own GSM8K loader and paper-faithful checker.
import test from 'ava';
import { check } from '../lib/data/answer.js';
import { formatPrompt, parseGsm8k } from '../lib/data/datasets.js';
import { FEW_SHOT_MARKERS, STRONG_MARKER, strongCorpus, weakCorpus } from '../lib/world/corpus.js';
import { generateProblems, generateProblemsExcluding, generateSplits, solutionPaths } from '../lib/world/problems.js';

test('the same seed gives the same problems; another seed others', (t) => {
  t.deepEqual(generateProblems(50, 3), generateProblems(50, 3));
  t.notDeepEqual(generateProblems(50, 3).map((p) => p.question), generateProblems(50, 4).map((p) => p.question));
});

test('every annotated step is correct arithmetic and the final line is the answer', (t) => {
  for (const p of generateProblems(300, 9, { steps: [1, 4], maxNumber: 30, maxValue: 100 })) {
    t.true(p.equations.every((e) => +e.split(" = ")[1]! <= 100 && +e.split(" = ")[1]! >= 1), p.answer);
    const calcs = [...p.answer.matchAll(/<<(\d+)([+\-*])(\d+)=(\d+)>>/g)];
    t.is(calcs.length, p.steps);
    for (const [, a, op, b, c] of calcs) {
      const want = op === '+' ? +a! + +b! : op === '-' ? +a! - +b! : +a! * +b!;
      t.is(+c!, want, p.answer);
    }
    t.is(+calcs.at(-1)![4]!, p.final);
    t.true(p.final > 0);
    t.true(p.answer.endsWith(`#### ${p.final}`));
  }
});

test('splits are disjoint and load as GSM8K; gold solutions score correct with the paper checker', (t) => {
  const s = generateSplits({ train1: 80, train2: 80, test: 40 }, 1, { steps: [2, 3] });
  t.deepEqual([s.train1.length, s.train2.length, s.test.length], [80, 80, 40]);
  const questions = [...s.train1, ...s.train2, ...s.test].map((p) => p.question);
  t.is(new Set(questions).size, questions.length);
  const jsonl = s.test.map((p) => JSON.stringify({ id: p.id, question: p.question, answer: p.answer })).join('\n');
  const problems = parseGsm8k(jsonl);
  problems.forEach((p, i) => {
    t.is(p.gold, String(s.test[i]!.final));
    t.true(check(p.target!, p.gold!, '####').correct);
    t.false(p.target!.includes('<<'));
  });
});

test('any-order solutions: every path is valid arithmetic to the same answer; off keeps the stream', (t) => {
  t.deepEqual(generateProblems(200, 8, { anyOrder: false }), generateProblems(200, 8));
  t.deepEqual(solutionPaths(5, [['+', 7], ['+', 4]], 20), [
    [[5, '+', 7, 12], [12, '+', 4, 16]], [[5, '+', 4, 9], [9, '+', 7, 16]], [[7, '+', 4, 11], [5, '+', 11, 16]],
  ]);
  t.deepEqual(solutionPaths(5, [['+', 7], ['-', 4]], 20), [[[5, '+', 7, 12], [12, '-', 4, 8]], [[5, '-', 4, 1], [1, '+', 7, 8]]]);
  t.is(solutionPaths(3, [['+', 7], ['-', 4]], 20).length, 1); // 3 - 4 leaves the range
  t.is(solutionPaths(5, [['*', 2], ['+', 4]], 20).length, 1);
  const ps = generateProblems(600, 8, { anyOrder: true });
  const story = generateProblems(600, 8, { anyOrder: false });
  let reordered = 0;
  ps.forEach((p, i) => {
    t.is(p.final, story[i]!.final); // the same problems: the path comes from a stream of its own
    t.is(p.question, story[i]!.question);
    t.true(p.answer.endsWith(`#### ${p.final}`));
    t.is(+p.equations.at(-1)!.split(' = ')[1]!, p.final);
    if (p.answer !== story[i]!.answer) reordered++;
  });
  t.log(`${reordered} of ${ps.length} solved in another order`);
  t.true(reordered > 100);
});

test('bad options are InvalidArgumentErrors', (t) => {
  t.throws(() => generateProblems(-1, 1), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  t.throws(() => generateProblems(5, 1, { steps: [3, 1] }), { message: /steps/ });
  t.throws(() => generateProblems(5, 1, { maxNumber: 1 }), { message: /maxNumber/ });
});

test('equations are the annotated steps without annotations', (t) => {
  for (const p of generateProblems(100, 5)) {
    t.deepEqual(p.equations, p.answer.split('\n').slice(0, -1).map((l) => l.replace(/<<[^>]*>>/g, '')));
  }
});

test('weak corpus solutions are the gold targets; the strong zero-shot style is invisible to the #### checker', (t) => {
  const ps = generateProblems(60, 2);
  const weak = weakCorpus(ps, { spacedShare: 0.5, seed: 4 });
  const jsonl = ps.map((p) => JSON.stringify({ id: p.id, question: p.question, answer: p.answer })).join('\n');
  parseGsm8k(jsonl).forEach((p, i) => {
    t.true(weak[i]!.response === ` ${p.target}` || weak[i]!.response === p.target, weak[i]!.response);
    t.is(weak[i]!.prompt, formatPrompt(p.question));
  });
  const strong = strongCorpus(ps, { fewShotFraction: 0, maxShots: 3, seed: 1, spacedShare: 0.5 });
  strong.forEach((d, i) => {
    t.true(d.response.endsWith(`${STRONG_MARKER} ${ps[i]!.final}`));
    t.is(check(d.response.trim(), String(ps[i]!.final), '####').pred, '');
  });
  // Both forms of the zero-shot answer, about half each (the method's SFT rows have no space, its few-shot prompts one).
  for (const docs of [weak, strong]) {
    const spaced = docs.filter((d) => d.response.startsWith(' ')).length;
    t.true(spaced > 15 && spaced < 45, `${spaced} of 60 spaced`);
  }
  t.deepEqual(weakCorpus(ps, { spacedShare: 0.5, seed: 4 }), weak);
  // By default every answer follows a space (the quick world's form).
  t.true(weakCorpus(ps).every((d) => d.response.startsWith(' ')));
});

test('few-shot strong documents: one marker per document, 1…maxShots examples, loss from the first answer on', (t) => {
  const ps = generateProblems(400, 3);
  const docs = strongCorpus(ps, { fewShotFraction: 0.5, maxShots: 4, seed: 7 });
  const few = docs.filter((d) => d.response.includes('Question:'));
  t.true(few.length > 150 && few.length < 250, `${few.length} few-shot documents of 400 at fraction 0.5`);
  const markers = new Set<string>();
  for (const d of few) {
    t.regex(d.prompt, /^Question: [^\n]*\nAnswer:$/);
    const answers = (d.prompt + d.response).split('\n\n').map((block) => block.split('\n').at(-1)!);
    t.true(answers.length >= 2 && answers.length <= 5, `${answers.length} examples`);
    const used = new Set(answers.map((a) => FEW_SHOT_MARKERS.find((m) => a.startsWith(`${m} `))));
    t.is(used.size, 1, answers.join(' | '));
    markers.add([...used][0]!);
  }
  t.deepEqual([...markers].sort(), [...FEW_SHOT_MARKERS].sort());
  t.deepEqual(strongCorpus(ps, { fewShotFraction: 0.5, maxShots: 4, seed: 7 }), docs);
});

test('pretraining problems avoid the excluded questions, keep the stream order, and fail when they cannot', (t) => {
  const opts = { steps: [1, 1] as const, maxNumber: 3, maxValue: 6 };
  const stream = generateProblems(400, 8, opts);
  const exclude = new Set(stream.slice(0, 200).filter((_, i) => i % 2 === 0).map((p) => p.question));
  const got = generateProblemsExcluding(150, 8, opts, exclude);
  t.is(got.length, 150);
  t.false(got.some((p) => exclude.has(p.question)));
  t.deepEqual(got.map((p) => p.question), stream.filter((p) => !exclude.has(p.question)).slice(0, 150).map((p) => p.question));
  const everything = new Set(generateProblems(5000, 9, opts).map((p) => p.question));
  t.throws(() => generateProblemsExcluding(10, 9, opts, everything), { code: 'ERR_W2S_INVALID_ARGUMENT' });
});

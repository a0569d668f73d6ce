// Stage II majority vote and pairing rules (lib/pipeline/vote.ts, pairs.ts): property tests over random
// questions that must hit every branch of method.md §5.3, plus boundary cases and option validation.

import test from 'ava';
import { buildPairs, GSM8K_PAIR_OPTIONS, MATH_PAIR_OPTIONS, pairQuestion, type PairKind, type PairQuestion, type SkipReason } from '../lib/pipeline/pairs.js';
import { createRng } from '../lib/pipeline/random.js';
import { majorityVote, type Sample } from '../lib/pipeline/vote.js';

const s = (pred: string, response = `resp ${pred}`, result?: boolean): Sample => ({ pred, response, result });
const question = (id: number, weakPred: string, preds: string[]): PairQuestion =>
  ({ id, prompt: `Question: q${id}\nAnswer:`, weak: s(weakPred, `weak ${id}`), samples: preds.map((p, i) => s(p, `sample ${i} of ${id}: ${p}`)) });

test('majority vote: counts, confidence, ties go to the first seen', (t) => {
  const v = majorityVote([s('2'), s('1'), s('1'), s('2'), s('3')]);
  t.like(v, { answer: '2', count: 2, total: 5, confidence: 0.4 });
  t.deepEqual(v.positives.map((x) => x.pred), ['2', '2']);
  t.deepEqual(v.negatives.map((x) => x.pred), ['1', '1', '3']);
  t.is(majorityVote([s('b'), s('a'), s('a'), s('b')]).answer, 'b');
  t.is(majorityVote([s(''), s('')]).answer, '');
  t.throws(() => majorityVote([]), { code: 'ERR_W2S_INVALID_ARGUMENT' });
});

/** Independent reference of the rules, used to check every decision on random questions. */
function expectedOutcome(q: PairQuestion, n: number): { skip: SkipReason | null; kind?: PairKind; pairs?: number } {
  const counts = new Map<string, number>();
  for (const x of q.samples) counts.set(x.pred, (counts.get(x.pred) ?? 0) + 1);
  const best = Math.max(...counts.values());
  const answer = [...counts].find(([, c]) => c === best)![0];
  const conf = best / q.samples.length;
  const negatives = q.samples.filter((x) => x.pred !== answer);
  const positiveTexts = new Set(q.samples.filter((x) => x.pred === answer).map((x) => x.response));
  if (conf < 0.6) return { skip: 'low-confidence' };
  if (answer === '') return { skip: 'empty-majority' };
  if (q.weak.pred === answer) return negatives.length === 0 ? { skip: 'no-negatives' } : { skip: null, kind: 'weak-chosen', pairs: Math.min(n, negatives.length) };
  if (conf >= 0.8) return { skip: null, kind: 'weak-rejected', pairs: Math.min(n, positiveTexts.size) };
  return { skip: 'uncertain-disagreement' };
}

/** Random questions skewed so every branch occurs: answers from a tiny alphabet, duplicate responses. */
function randomQuestions(count: number, seed: number): PairQuestion[] {
  const rng = createRng(seed);
  const alphabet = ['1', '2', '3', ''];
  return Array.from({ length: count }, (_, id) => {
    const main = alphabet[rng.int(3)]!;
    const agree = rng.next();
    const samples = Array.from({ length: 10 }, (_, i) => {
      const pred = rng.next() < agree ? main : alphabet[rng.int(4)]!;
      return s(pred, `resp ${pred} v${rng.int(3)}`, pred === '1');
    });
    if (rng.next() < 0.03) samples.forEach((x, i) => { x.pred = i < 7 ? '' : '2'; });
    const weakPred = rng.next() < 0.5 ? main : alphabet[rng.int(4)]!;
    return { id, prompt: `Q${id}`, weak: s(weakPred, `weak ${id}`, weakPred === '1'), samples };
  });
}

for (const [style, options] of [['GSM8K', GSM8K_PAIR_OPTIONS], ['MATH', MATH_PAIR_OPTIONS]] as const) {
  test(`${style} style: every decision follows the rules, every branch is hit`, (t) => {
    const questions = randomQuestions(3000, style.length);
    const { pairs, perQuestion, stats } = buildPairs(questions, options);
    const seen = new Map<string, number>();
    perQuestion.forEach((r, i) => {
      const q = questions[i]!;
      const want = expectedOutcome(q, options.pairsPerQuestion);
      const branch = want.skip ?? want.kind!;
      seen.set(branch, (seen.get(branch) ?? 0) + 1);
      t.is(r.skipped, want.skip, `question ${i}`);
      if (want.skip !== null) return t.is(r.pairs.length, 0);
      t.is(r.kind, want.kind ?? null);
      t.is(r.pairs.length, want.pairs!);
      for (const p of r.pairs) {
        t.not(p.chosen.pred, p.rejected.pred);
        if (r.kind === 'weak-chosen') t.true(p.chosen === q.weak && r.vote.negatives.includes(p.rejected));
        else t.true(p.rejected === q.weak && r.vote.positives.includes(p.chosen));
      }
      const other = r.pairs.map((p) => (r.kind === 'weak-chosen' ? p.rejected : p.chosen));
      t.is(new Set(other).size, other.length, 'no sample used twice');
      if (r.kind === 'weak-rejected') t.is(new Set(other.map((x) => x.response)).size, other.length, 'distinct positives');
    });
    t.log(style, Object.fromEntries(seen));
    for (const branch of ['low-confidence', 'empty-majority', 'no-negatives', 'uncertain-disagreement', 'weak-chosen', 'weak-rejected']) {
      t.true((seen.get(branch) ?? 0) >= 10, `branch ${branch} hit ${seen.get(branch) ?? 0} times`);
    }
    t.is(stats.pairs, pairs.length);
    t.is(stats.weakChosenPairs + stats.weakRejectedPairs, pairs.length);
    t.is(stats.weakChosenQuestions, seen.get('weak-chosen') ?? 0);
    t.is(stats.skipped['uncertain-disagreement'], seen.get('uncertain-disagreement') ?? 0);
    t.is(stats.chosenCorrect, perQuestion.flatMap((r) => r.pairs).filter((p) => p.chosen.result).length);
    t.is(stats.rejectedCorrect, perQuestion.flatMap((r) => r.pairs).filter((p) => p.rejected.result).length);
    if (style === 'MATH') t.true(perQuestion.some((r) => r.pairs.length === 3), 'up to 3 pairs per question');
  });
}

test('boundaries: confidence exactly 0.6 pairs, exactly 0.8 rejects the weak response, 0.7 does not', (t) => {
  const rng = createRng(1);
  const at = (weak: string, a: number) => pairQuestion(question(0, weak, [...Array(a).fill('5'), ...Array(10 - a).fill('6')]), GSM8K_PAIR_OPTIONS, rng);
  t.like(at('5', 6), { kind: 'weak-chosen', skipped: null });
  t.like(at('5', 5), { kind: null, skipped: 'low-confidence' });
  t.like(at('7', 8), { kind: 'weak-rejected' });
  t.like(at('7', 7), { kind: null, skipped: 'uncertain-disagreement' });
  t.like(at('', 8), { kind: 'weak-rejected' }); // an empty weak answer is just a wrong one
  t.like(at('5', 10), { skipped: 'no-negatives' });
});

test('tie: the first-seen answer is the majority, the tied one the negatives', (t) => {
  const q = question(0, '4', ['4', '9', '4', '9', '4', '9', '4', '9', '4', '9'].concat(['4', '9']));
  const r = pairQuestion(q, { ...GSM8K_PAIR_OPTIONS, minConfidence: 0.5 }, createRng(3));
  t.is(r.vote.answer, '4');
  t.like(r, { kind: 'weak-chosen' });
  t.is(r.pairs[0]!.rejected.pred, '9');
});

test('MATH style: all negatives when at most 3, otherwise 3 drawn at random; positives deduplicated by text', (t) => {
  const few = pairQuestion(question(0, '1', ['1', '1', '1', '1', '1', '1', '1', '2', '3', '']), MATH_PAIR_OPTIONS, createRng(1));
  t.deepEqual(few.pairs.map((p) => p.rejected.pred), ['2', '3', '']);
  const drawn = new Set<string>();
  for (let seed = 0; seed < 40; seed++) {
    const many = pairQuestion(question(0, '1', ['1', '1', '1', '1', '1', '1', '2', '3', '4', '5']), MATH_PAIR_OPTIONS, createRng(seed));
    t.is(many.pairs.length, 3);
    many.pairs.forEach((p) => drawn.add(p.rejected.pred));
  }
  t.deepEqual([...drawn].sort(), ['2', '3', '4', '5'], 'every negative gets drawn for some seed');
  const dup = question(0, '9', Array(10).fill('1'));
  dup.samples.forEach((x, i) => { x.response = `text ${i % 2}`; });
  t.is(pairQuestion(dup, MATH_PAIR_OPTIONS, createRng(1)).pairs.length, 2);
  t.is(pairQuestion(dup, GSM8K_PAIR_OPTIONS, createRng(1)).pairs.length, 1);
});

test('seeded: same seed, same pairs; records carry the prompt and [chosen, rejected]', (t) => {
  const qs = randomQuestions(300, 9);
  const a = buildPairs(qs, { seed: 42 });
  t.deepEqual(buildPairs(qs, { seed: 42 }).pairs, a.pairs);
  t.notDeepEqual(buildPairs(qs, { seed: 7 }).pairs, a.pairs);
  t.true(a.pairs.every((p) => p.instruction === qs[p.id as number]!.prompt && p.input === ''));
});

test('options are validated', (t) => {
  t.throws(() => buildPairs([], { minConfidence: 1.5 }), { message: /Expected a number in \[0, 1\] for minConfidence but received 1.5/ });
  t.throws(() => buildPairs([], { pairsPerQuestion: 0 }), { code: 'ERR_W2S_INVALID_ARGUMENT' });
  t.throws(() => buildPairs([], { seed: 0.5 }), { message: /for seed/ });
});

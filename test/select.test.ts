// Stage I final-answer consistency (lib/pipeline/select.ts): the rule on small cases, and a reproduction of
// the released GSM8K round 1 and round 2 sets with their method.md §4 statistics.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { GSM8K_ANSWER_KEY, normalizeAnswer, predOf } from '../lib/data/answer.js';
import { loadProblems } from '../lib/data/datasets.js';
import { parseResults, parseSft, type SftRecord } from '../lib/data/formats.js';
import { selectConsistent, type Generation } from '../lib/pipeline/select.js';
import { dataPath, dataTest, GSM8K_PAPER } from './helpers/shared-data.js';

const gen = (id: number, pred: string, result?: boolean): Generation => ({ id, prompt: `Question: q${id}\nAnswer:`, response: `r${id}\n#### ${pred}`, pred, result });

test('keeps q iff the weak answer is non-empty and equals the ICL answer', (t) => {
  const weak = [gen(0, '5', true), gen(1, '', false), gen(2, '7', false), gen(3, '9', true), gen(4, '1', true)];
  const icl = [gen(4, '1'), gen(3, '9'), gen(2, '8'), gen(1, ''), gen(0, '5')].map((g) => ({ ...g, prompt: 'few-shot prompt', response: `icl ${g.id}` }));
  const s = selectConsistent(weak, icl);
  t.deepEqual(s.ids, [0, 3, 4]); // weak order, not ICL order
  t.deepEqual(s.weak.map((r) => r.output), ['r0\n#### 5', 'r3\n#### 9', 'r4\n#### 1']);
  t.deepEqual(s.icl.map((r) => r.output), ['icl 0', 'icl 3', 'icl 4']);
  t.true(s.icl.every((r, i) => r.content === s.weak[i]!.content), 'ICL examples train with the zero-shot prompt');
  t.deepEqual(s.hybrid, [s.weak[0], s.icl[0], s.weak[1], s.icl[1], s.weak[2], s.icl[2]]);
  t.like(s.stats, { total: 5, kept: 3, droppedEmpty: 1, droppedDisagree: 1, keptCorrect: 3, precision: 1, weakAccuracy: 0.6 });
  t.is(selectConsistent(weak, icl, { keepEmpty: true }).stats.kept, 4);
});

test('statistics fall back to gold, or are null when correctness is unknown', (t) => {
  const withGold = selectConsistent([{ ...gen(0, '5'), gold: '5' }, { ...gen(1, '6'), gold: '7' }], [gen(0, '5'), gen(1, '6')]);
  t.like(withGold.stats, { kept: 2, keptCorrect: 1, precision: 0.5, weakAccuracy: 0.5 });
  const unknown = selectConsistent([gen(0, '5'), gen(1, '6', true)], [gen(0, '5'), gen(1, '6')]);
  t.like(unknown.stats, { keptCorrect: null, precision: null, weakAccuracy: null });
  t.is(selectConsistent([gen(0, '5', true)], [gen(0, '4')]).stats.precision, null);
});

test('ids must be unique and every weak id needs an ICL generation', (t) => {
  t.throws(() => selectConsistent([gen(0, '1')], [gen(1, '1')]), { code: 'ERR_W2S_INVALID_ARGUMENT', message: /ICL generation for id 0/ });
  t.throws(() => selectConsistent([gen(0, '1'), gen(0, '1')], [gen(0, '1')]), { message: /weak generations but 0 repeats/ });
  t.throws(() => selectConsistent([gen(0, '1')], [gen(0, '1'), gen(0, '1')]), { message: /ICL generations but 0 repeats/ });
});

const sft = (file: string) => parseSft(readFileSync(dataPath(GSM8K_PAPER, file), 'utf8'));
const NOT_RELEASED = '\u0000ICL response not in the release';

dataTest('round 1: D_weak + released ICL responses reproduce the released sets (89.8% precision)', (t) => {
  const dWeak = parseResults(readFileSync(dataPath(GSM8K_PAPER, 'weak_zero_shot_train_2.results.jsonl'), 'utf8'));
  const paper = { weak: sft('train_gsm8k_llama2_7b_iter1_weak.json'), icl: sft('train_gsm8k_llama2_7b_iter1_icl.json'), hybrid: sft('train_gsm8k_llama2_7b_iter1_hybrid.json') };
  // Only the kept questions' ICL responses are released; the others get an answer that matches nothing.
  const released = new Map(paper.icl.map((r) => [r.id, r.output]));
  const dIcl: Generation[] = dWeak.map((w) => {
    const response = released.get(w.id);
    return { id: w.id, prompt: 'few-shot', response: response ?? '', pred: response === undefined ? NOT_RELEASED : predOf(response, GSM8K_ANSWER_KEY) };
  });
  const asReleased = selectConsistent(dWeak, dIcl, { keepEmpty: true });
  t.deepEqual({ weak: asReleased.weak, icl: asReleased.icl, hybrid: asReleased.hybrid }, paper);
  t.is(Math.round(asReleased.stats.precision! * 1000) / 10, 89.8);
  t.is(Math.round(asReleased.stats.weakAccuracy! * 1000) / 10, 41.4);

  const stated = selectConsistent(dWeak, dIcl);
  const emptyIds = paper.weak.filter((r) => dWeak[r.id as number]!.pred === '').map((r) => r.id);
  t.is(emptyIds.length, 8);
  t.deepEqual(stated.weak, paper.weak.filter((r) => !emptyIds.includes(r.id)));
  t.is(stated.stats.kept, paper.weak.length - emptyIds.length);
});

dataTest('round 2: the released strong-model generations keep all 4,022 (86.7% precision against gold)', async (t) => {
  const gold = new Map((await loadProblems(dataPath('gsm8k/train_2.jsonl'), 'gsm8k', { ids: 'index' })).map((p) => [p.id, normalizeAnswer(p.gold!)]));
  const toGen = (r: SftRecord): Generation => ({ id: r.id, prompt: r.content, response: r.output, pred: predOf(r.output, GSM8K_ANSWER_KEY), gold: gold.get(r.id)! });
  const weak = sft('train_gsm8k_llama2_7b_iter2_weak.json');
  const icl = sft('train_gsm8k_llama2_7b_iter2_icl.json');
  const s = selectConsistent(weak.map(toGen), icl.map(toGen), { keepEmpty: true });
  t.deepEqual(s.hybrid, sft('train_gsm8k_llama2_7b_iter2_hybrid.json'));
  t.is(s.stats.kept, 4022);
  t.is(Math.round(s.stats.precision! * 1000) / 10, 86.7);
  t.is(selectConsistent(weak.map(toGen), icl.map(toGen)).stats.droppedEmpty, 11);
});

// Evaluation metrics (lib/pipeline/metrics.ts): greedy accuracy on the paper's D_weak, pass@k, maj@k and
// PGR on small cases, and the pass@k ≥ maj@k and monotonicity properties on random verdicts.

import test from 'ava';
import { readFileSync } from 'node:fs';
import { parseResults } from '../lib/data/formats.js';
import { greedyAccuracy, majAtK, passAtK, pgr } from '../lib/pipeline/metrics.js';
import { createRng } from '../lib/pipeline/random.js';
import { dataPath, dataTest, GSM8K_PAPER } from './helpers/shared-data.js';

dataTest('greedy accuracy of the paper D_weak is the 41.4% of method.md §4', (t) => {
  const rows = parseResults(readFileSync(dataPath(GSM8K_PAPER, 'weak_zero_shot_train_2.results.jsonl'), 'utf8'));
  const acc = greedyAccuracy(rows.map((r) => r.result));
  t.is(acc, rows.filter((r) => r.result).length / rows.length);
  t.is(Math.round(acc * 1000) / 10, 41.4);
});

test('greedy accuracy', (t) => {
  t.is(greedyAccuracy([true, false, true, true]), 0.75);
  t.throws(() => greedyAccuracy([]), { code: 'ERR_W2S_INVALID_ARGUMENT' });
});

test('pass@k counts a question when any of its first k samples is correct', (t) => {
  const r = [[false, false, true], [false, false, false], [true, false, false], [false, true, true]];
  t.is(passAtK(r, 1), 1 / 4);
  t.is(passAtK(r, 2), 2 / 4);
  t.is(passAtK(r, 3), 3 / 4);
  t.throws(() => passAtK(r, 4), { message: /at least k = 4 samples per question for samples of question 0/ });
  t.throws(() => passAtK(r, 0), { message: /positive integer for k/ });
});

test('maj@k scores the majority answer of the first k samples (ties: first seen)', (t) => {
  const q = (...xs: Array<[string, boolean]>) => xs.map(([pred, result]) => ({ pred, result }));
  const samples = [
    q(['7', true], ['8', false], ['8', false], ['7', true], ['7', true]), // k=3: 8 wins; k=5: 7 wins
    q(['1', false], ['2', true], ['3', false], ['3', false], ['9', false]), // k=3: three-way tie, 1 first; k=5: 3
    q(['', false], ['', false], ['5', true], ['5', true], ['5', true]),
  ];
  t.is(majAtK(samples, 3), 0);
  t.is(majAtK(samples, 5), 2 / 3);
  t.is(majAtK(samples, 1), 1 / 3);
});

test('properties on random verdicts: pass@k is monotone in k and never below maj@k', (t) => {
  const rng = createRng(5);
  const samples = Array.from({ length: 200 }, () => Array.from({ length: 10 }, () => {
    const pred = String(rng.int(4));
    return { pred, result: pred === '0' };
  }));
  const verdicts = samples.map((s) => s.map((x) => x.result));
  let previous = 0;
  for (let k = 1; k <= 10; k++) {
    const pass = passAtK(verdicts, k);
    t.true(pass >= previous);
    t.true(pass >= majAtK(samples, k), `k=${k}`);
    previous = pass;
  }
  t.is(passAtK(verdicts, 1), greedyAccuracy(verdicts.map((v) => v[0]!)));
});

test('PGR = (w2s − weak) / (ceiling − weak)', (t) => {
  t.true(Math.abs(pgr({ weak: 0.2, w2s: 0.5, ceiling: 0.8 }) - 0.5) < 1e-12);
  t.is(pgr({ weak: 20, w2s: 50, ceiling: 80 }), 0.5);
  t.is(pgr({ weak: 25.2, w2s: 25.2, ceiling: 60 }), 0);
  t.true(pgr({ weak: 11.6, w2s: 10.0, ceiling: 20 }) < 0, 'below the weak floor is negative');
  t.throws(() => pgr({ weak: 0.3, w2s: 0.4, ceiling: 0.3 }), { message: /ceiling accuracy different/ });
  t.throws(() => pgr({ weak: Number.NaN, w2s: 0.4, ceiling: 0.3 }), { message: /finite number for weak/ });
});

// Evaluation metrics of method.md §7: greedy accuracy, pass@k, maj@k, PGR (Burns et al. 2023).
// Inputs are verdicts already computed by answer.ts; owns no answer checking.

import { InvalidArgumentError } from '../errors.js';
import { majorityVote } from './vote.js';

function nonEmpty(n: number, name: string): void {
  if (n === 0) throw InvalidArgumentError.expected('at least one question', name, n);
}

function checkK(k: number, perQuestion: readonly (readonly unknown[])[]): void {
  if (!Number.isInteger(k) || k < 1) throw InvalidArgumentError.expected('a positive integer', 'k', k);
  const short = perQuestion.findIndex((s) => s.length < k);
  if (short !== -1) throw InvalidArgumentError.expected(`at least k = ${k} samples per question`, `samples of question ${short}`, perQuestion[short]!.length);
}

/** Fraction of questions whose greedy answer is correct. */
export function greedyAccuracy(results: readonly boolean[]): number {
  nonEmpty(results.length, 'results');
  return results.filter(Boolean).length / results.length;
}

/** pass@k: fraction of questions with at least one correct answer among their first k samples. */
export function passAtK(results: readonly (readonly boolean[])[], k: number): number {
  nonEmpty(results.length, 'results');
  checkK(k, results);
  return results.filter((r) => r.slice(0, k).some(Boolean)).length / results.length;
}

/**
 * maj@k: fraction of questions whose majority answer over the first k samples (ties: first seen) is
 * correct; the majority is correct when its samples are (they share one normalized pred).
 */
export function majAtK(samples: readonly (readonly { pred: string; result: boolean }[])[], k: number): number {
  nonEmpty(samples.length, 'samples');
  checkK(k, samples);
  const correct = samples.filter((s) => {
    return majorityVote(s.slice(0, k)).positives[0]!.result;
  });
  return correct.length / samples.length;
}

/**
 * Performance gap recovered: (acc_w2s − acc_weak) / (acc_ceiling − acc_weak), where the ceiling is the
 * strong model fine-tuned on gold. 1 = the whole gap recovered, 0 = no better than the weak supervisor.
 */
export function pgr(acc: { weak: number; w2s: number; ceiling: number }): number {
  for (const name of ['weak', 'w2s', 'ceiling'] as const) {
    if (typeof acc[name] !== 'number' || !Number.isFinite(acc[name])) throw InvalidArgumentError.expected('a finite number', name, acc[name]);
  }
  if (acc.ceiling === acc.weak) throw InvalidArgumentError.expected('a ceiling accuracy different from the weak accuracy', 'ceiling', acc.ceiling);
  return (acc.w2s - acc.weak) / (acc.ceiling - acc.weak);
}

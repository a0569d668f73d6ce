// Stage II pairing rules (method.md §5.3; the paper's construct_paired_data_{gsm8k,math}): the weak
// response is always one side of each pair. Owns the rules and their statistics, not the vote (vote.ts).

import { InvalidArgumentError } from '../errors.js';
import type { Id } from '../data/datasets.js';
import type { PairRecord } from '../data/formats.js';
import { createRng, type Rng } from './random.js';
import { majorityVote, type Sample, type Vote } from './vote.js';

export interface PairOptions {
  /** Skip a question whose majority confidence is below this. Defaults to 0.6. */
  minConfidence?: number;
  /** When the weak answer is not the majority, pair only if confidence is at least this. Defaults to 0.8. */
  rejectConfidence?: number;
  /**
   * Most pairs per question: random negatives when the weak response is chosen, distinct positives when
   * it is rejected. Defaults to 1 (GSM8K); the paper uses 3 for MATH and OlympicArena.
   */
  pairsPerQuestion?: number;
  /** Seed of the PRNG that draws the other side. Defaults to 42 (the paper's). */
  seed?: number;
}

export const GSM8K_PAIR_OPTIONS: Required<PairOptions> = Object.freeze({ minConfidence: 0.6, rejectConfidence: 0.8, pairsPerQuestion: 1, seed: 42 });
export const MATH_PAIR_OPTIONS: Required<PairOptions> = Object.freeze({ ...GSM8K_PAIR_OPTIONS, pairsPerQuestion: 3 });

/** One train_2 question: its zero-shot prompt, the weak model's greedy response (D_weak), M_plus's samples. */
export interface PairQuestion<S extends Sample = Sample> {
  id: Id;
  prompt: string;
  weak: Sample;
  samples: readonly S[];
}

export type PairKind = 'weak-chosen' | 'weak-rejected';
export type SkipReason = 'low-confidence' | 'empty-majority' | 'no-negatives' | 'uncertain-disagreement';

export interface QuestionPairs {
  id: Id;
  vote: Vote;
  /** Which side the weak response takes, or null when skipped. */
  kind: PairKind | null;
  skipped: SkipReason | null;
  pairs: Array<{ chosen: Sample; rejected: Sample }>;
}

export interface PairStats {
  questions: number;
  pairs: number;
  weakChosenQuestions: number;
  weakChosenPairs: number;
  weakRejectedQuestions: number;
  weakRejectedPairs: number;
  skipped: Record<SkipReason, number>;
  /** Pairs whose chosen (resp. rejected) side is correct, or null when some verdict is unknown. */
  chosenCorrect: number | null;
  rejectedCorrect: number | null;
}

function resolve(options: PairOptions): Required<PairOptions> {
  const o = { ...GSM8K_PAIR_OPTIONS, ...options };
  for (const name of ['minConfidence', 'rejectConfidence'] as const) {
    if (typeof o[name] !== 'number' || !(o[name] >= 0 && o[name] <= 1)) throw InvalidArgumentError.expected('a number in [0, 1]', name, o[name]);
  }
  if (!Number.isInteger(o.pairsPerQuestion) || o.pairsPerQuestion < 1) throw InvalidArgumentError.expected('a positive integer', 'pairsPerQuestion', o.pairsPerQuestion);
  return o;
}

/** Up to n positives: one drawn at random, then others in sample order whose text differs from all taken. */
function distinctPositives(positives: readonly Sample[], n: number, rng: Rng): Sample[] {
  const first = positives[rng.int(positives.length)]!;
  const taken = [first];
  const texts = new Set([first.response]);
  for (const p of positives) {
    if (taken.length >= n) break;
    if (texts.has(p.response)) continue;
    taken.push(p);
    texts.add(p.response);
  }
  return taken;
}

/** Apply the pairing rules to one question, drawing from `rng` (shared across questions, as the paper). */
export function pairQuestion(q: PairQuestion, options: PairOptions, rng: Rng): QuestionPairs {
  const o = resolve(options);
  const vote = majorityVote(q.samples);
  const skip = (skipped: SkipReason): QuestionPairs => ({ id: q.id, vote, kind: null, skipped, pairs: [] });
  if (vote.confidence < o.minConfidence) return skip('low-confidence');
  if (vote.answer === '') return skip('empty-majority');
  if (q.weak.pred === vote.answer) {
    if (vote.negatives.length === 0) return skip('no-negatives'); // too easy: nothing to contrast
    const n = o.pairsPerQuestion;
    const rejected = vote.negatives.length <= n ? vote.negatives : rng.sample(vote.negatives, n);
    return { id: q.id, vote, kind: 'weak-chosen', skipped: null, pairs: rejected.map((r) => ({ chosen: q.weak, rejected: r })) };
  }
  if (vote.confidence >= o.rejectConfidence) {
    const chosen = distinctPositives(vote.positives, o.pairsPerQuestion, rng);
    return { id: q.id, vote, kind: 'weak-rejected', skipped: null, pairs: chosen.map((c) => ({ chosen: c, rejected: q.weak })) };
  }
  return skip('uncertain-disagreement');
}

/** Build the preference set of all questions, in input order, with pair-kind counts. */
export function buildPairs(questions: readonly PairQuestion[], options: PairOptions = {}): { pairs: PairRecord[]; perQuestion: QuestionPairs[]; stats: PairStats } {
  const o = resolve(options);
  const rng = createRng(o.seed);
  const stats: PairStats = {
    questions: questions.length, pairs: 0, weakChosenQuestions: 0, weakChosenPairs: 0, weakRejectedQuestions: 0, weakRejectedPairs: 0,
    skipped: { 'low-confidence': 0, 'empty-majority': 0, 'no-negatives': 0, 'uncertain-disagreement': 0 },
    chosenCorrect: 0, rejectedCorrect: 0,
  };
  const pairs: PairRecord[] = [];
  const perQuestion = questions.map((q) => {
    const r = pairQuestion(q, o, rng);
    if (r.skipped !== null) stats.skipped[r.skipped]++;
    else if (r.kind === 'weak-chosen') { stats.weakChosenQuestions++; stats.weakChosenPairs += r.pairs.length; }
    else { stats.weakRejectedQuestions++; stats.weakRejectedPairs += r.pairs.length; }
    for (const { chosen, rejected } of r.pairs) {
      // Generated ids per side, only when a side has them (pairs of text-only samples stay the paper's bytes).
      const ids = (s: Sample) => (s.token_ids && s.tokenizer ? s : undefined);
      const c = ids(chosen);
      const j = ids(rejected);
      pairs.push({
        id: q.id, instruction: q.prompt, input: '', output: [chosen.response, rejected.response],
        ...(c || j ? { token_ids: [c?.token_ids ?? null, j?.token_ids ?? null], tokenizer: [c?.tokenizer ?? null, j?.tokenizer ?? null] } : {}),
      });
      stats.chosenCorrect = chosen.result === undefined || stats.chosenCorrect === null ? null : stats.chosenCorrect + Number(chosen.result);
      stats.rejectedCorrect = rejected.result === undefined || stats.rejectedCorrect === null ? null : stats.rejectedCorrect + Number(rejected.result);
    }
    return r;
  });
  stats.pairs = pairs.length;
  return { pairs, perQuestion, stats };
}

// Stage II majority vote over one question's sampled generations (method.md §5.2; the paper's
// construct_majority_voting_data with Counter.most_common). Owns no pairing (pairs.ts).

import { InvalidArgumentError } from '../errors.js';

/** One sampled generation; `pred` is the normalized answer (answer.ts `predOf`). */
export interface Sample {
  response: string;
  pred: string;
  /** Verdict against gold, when known (statistics only). */
  result?: boolean;
  /** The response's generated ids and tokenizer (lib/pipeline/token-ids.ts), carried into the pairs. */
  token_ids?: number[];
  tokenizer?: string;
}

export interface Vote<S extends { pred: string } = Sample> {
  /** a+: the most common pred; ties go to the one seen first in sample order. May be `''`. */
  answer: string;
  /** Samples whose pred is `answer`. */
  count: number;
  /** Number of samples voted over (k). */
  total: number;
  /** count / total. */
  confidence: number;
  /** Samples whose pred is `answer`, in sample order. */
  positives: S[];
  /** All other samples, in sample order. */
  negatives: S[];
}

/** Vote over samples (only `pred` is read); positives and negatives keep the input objects. */
export function majorityVote<S extends { pred: string }>(samples: readonly S[]): Vote<S> {
  if (samples.length === 0) throw new InvalidArgumentError('Expected at least one sample to vote over but received 0');
  const counts = new Map<string, number>(); // insertion order = first-seen order
  for (const s of samples) counts.set(s.pred, (counts.get(s.pred) ?? 0) + 1);
  let answer = samples[0]!.pred;
  let count = 0;
  for (const [pred, n] of counts) {
    if (n > count) { // strictly greater: an equal count later in order never wins the tie
      answer = pred;
      count = n;
    }
  }
  return {
    answer,
    count,
    total: samples.length,
    confidence: count / samples.length,
    positives: samples.filter((s) => s.pred === answer),
    negatives: samples.filter((s) => s.pred !== answer),
  };
}

// Batching for training: seeded per-epoch order, micro-batches padded to their longest sequence, and the
// grouping of micro-batches into optimizer steps (gradient accumulation).
import { InvalidArgumentError } from '../errors.js';
import { createRng } from '../pipeline/random.js';
import type { NativeTrainBatch } from '../native.js';

export interface Sequence {
  tokens: readonly number[];
  /** Positions p >= nPrompt - 1 (and < tokens.length - 1) predict tokens[p + 1]. */
  nPrompt: number;
}

/** Example order of one epoch: a seeded Fisher–Yates shuffle of 0..n-1 (same seed + epoch, same order). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const rng = createRng((seed * 1_000_003 + epoch * 7919) % 2 ** 32);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Pads sequences into one micro-batch; `pad` fills token slots past each sequence (no loss there). */
export function makeBatch(seqs: readonly Sequence[], pad: number): NativeTrainBatch & { nTargets: number; nTokens: number } {
  const T = Math.max(...seqs.map((s) => s.tokens.length));
  const B = seqs.length;
  const tokens = new Int32Array(T * B).fill(pad);
  const targets = new Int32Array(T * B).fill(-1);
  let nTargets = 0;
  let nTokens = 0;
  seqs.forEach((s, b) => {
    nTokens += s.tokens.length;
    s.tokens.forEach((t, p) => {
      tokens[b * T + p] = t;
      if (p >= s.nPrompt - 1 && p < s.tokens.length - 1) {
        targets[b * T + p] = s.tokens[p + 1]!;
        nTargets += 1;
      }
    });
  });
  return { T, B, tokens, targets, nTargets, nTokens };
}

export interface StepPlan {
  epoch: number;
  /** Micro-batches of example indices for this optimizer step. */
  micro: number[][];
}

/**
 * The run's optimizer steps, made on demand: each epoch's order is cut into micro-batches of `batch` examples
 * and `gradAccum` micro-batches make a step (the last step of an epoch may have fewer). Only the current
 * epoch's order is held, so memory does not grow with the epoch count.
 */
export interface StepSchedule {
  /** Optimizer steps of the whole run (every epoch). */
  readonly length: number;
  readonly stepsPerEpoch: number;
  /** Step `s` (0-based, < length). */
  at(s: number): StepPlan;
}

export function planSteps(n: number, epochs: number, batch: number, gradAccum: number, seed: number): StepSchedule {
  const microPerEpoch = Math.ceil(n / batch);
  const stepsPerEpoch = Math.ceil(microPerEpoch / gradAccum);
  const length = epochs * stepsPerEpoch;
  // Step numbers must stay exact (schedule, checkpoints): beyond 2^53 they would not.
  if (!Number.isSafeInteger(length)) {
    throw InvalidArgumentError.expected(`integer in [1, ${Math.floor(Number.MAX_SAFE_INTEGER / Math.max(1, stepsPerEpoch))}] (at most 2^53 - 1 steps in all)`, 'epochs', epochs);
  }
  let current: { epoch: number; order: number[] } | undefined;
  return {
    length,
    stepsPerEpoch,
    at(s: number): StepPlan {
      if (!Number.isSafeInteger(s) || s < 0 || s >= length) throw new RangeError(`step ${s} is outside 0..${length - 1}`);
      const epoch = Math.floor(s / stepsPerEpoch);
      if (current?.epoch !== epoch) current = { epoch, order: epochOrder(n, seed, epoch) };
      const first = (s - epoch * stepsPerEpoch) * gradAccum;
      const micro: number[][] = [];
      for (let m = first; m < Math.min(first + gradAccum, microPerEpoch); m++) micro.push(current.order.slice(m * batch, (m + 1) * batch));
      return { epoch, micro };
    },
  };
}

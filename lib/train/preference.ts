// trainDpo, trainOrpo: preference optimisation (method.md §5.4) on the native LoRA engine, with the SFT
// trainer's options, loop, checkpoints, progress, abort and adapter format. A micro-batch of P pairs is one
// native graph over 2P sequences; the loss of a step is the mean over its pairs.
//   DPO:  -log σ(β·[(log πθ(y⁺|x) - log πref(y⁺|x)) - (log πθ(y⁻|x) - log πref(y⁻|x))]); πref = the starting
//         adapter, whose log-probs are computed once before the first step and saved in the checkpoints.
//   ORPO: -ℓ̄θ(y⁺|x) + λ·(-log σ(log odds(y⁺) - log odds(y⁻))), ℓ̄ = length-averaged response log-prob.
import { openTrainer, tokenizeWithVocab } from './setup.js';
import { AbortError, CheckpointError, InvalidArgumentError, TrainingDivergedError } from '../errors.js';
import { computeQueue } from '../job-queue.js';
import { mapNativeError, type NativeTrainer } from '../native.js';
import * as v from '../validate.js';
import { makeBatch, planSteps } from './batches.js';
import { runTrainingLoop, type TrainResult } from './loop.js';
import { checkTrainPaths, resolveTrainOptions, type ResolvedTrainOptions, type TrainOptions } from './options.js';
import { normalizePreferenceRows, readPreferencePairs, tokenizePairs, type PreferenceRow, type TokenizedPair } from './preference-data.js';

export interface PreferenceOptions extends TrainOptions {
  /**
   * JSONL/JSON file, or the rows themselves: {prompt, chosen, rejected} or the paper's
   * {instruction, input, output: [chosen, rejected]}. `batch` counts pairs (two sequences each).
   */
  data: string | readonly PreferenceRow[];
}

export interface DpoOptions extends PreferenceOptions {
  /** Scale of the implicit reward β·log(πθ/πref). Defaults to 0.1. */
  beta?: number;
}

export interface OrpoOptions extends PreferenceOptions {
  /** Weight λ of the odds-ratio term against the SFT term. Defaults to 0.1. */
  lambda?: number;
}

/**
 * The native ORPO clamp (native/core/trainer.h, ORPO_MAX_MEAN_LOGP): ℓ̄ is taken as min(ℓ̄, -1e-4) in the odds
 * term, so log(1 - exp(ℓ̄)) stays finite when every response token has probability ~1.
 */
export const ORPO_MAX_MEAN_LOGP = -1e-4;

/** log odds(p) = ℓ̄ - log(1 - exp(ℓ̄)) for p = exp(ℓ̄), with ORPO's clamp; log1p(-exp) is accurate for ℓ̄ < 0. */
export function orpoLogOdds(meanLogp: number): number {
  const m = Math.min(meanLogp, ORPO_MAX_MEAN_LOGP);
  return m - Math.log1p(-Math.exp(m));
}

/** log σ(x), stable for large |x|. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

export async function trainDpo(options: DpoOptions): Promise<TrainResult> {
  const beta = v.numberIn('beta', options?.beta ?? 0.1, 0, 1e6, true);
  return trainPreference('dpo', options, beta, 0);
}

export async function trainOrpo(options: OrpoOptions): Promise<TrainResult> {
  const lambda = v.numberIn('lambda', options?.lambda ?? 0.1, 0, 1e6);
  return trainPreference('orpo', options, 0, lambda);
}

type Kind = 'dpo' | 'orpo';

async function trainPreference(kind: Kind, options: PreferenceOptions, beta: number, lambda: number): Promise<TrainResult> {
  const o = resolveTrainOptions(options);
  await checkTrainPaths(o, options.data);
  if (typeof options.data !== 'string' && !Array.isArray(options.data)) {
    throw InvalidArgumentError.expected('file path or array of {prompt, chosen, rejected}', 'data', options.data);
  }
  const rows = typeof options.data === 'string' ? await readPreferencePairs(options.data) : normalizePreferenceRows(options.data);
  const tokenized = await tokenizeWithVocab(o, (vocab) => tokenizePairs(vocab, rows, o.maxLen, o.parseSpecial));
  const pairs = tokenized.pairs;
  const data = {
    rows: rows.length, pairs: pairs.length, skippedIdentical: tokenized.skippedIdentical,
    skippedEmptyResponse: tokenized.skippedEmptyResponse, skippedPromptTooLong: tokenized.skippedPromptTooLong, truncated: tokenized.truncated,
  };
  if (pairs.length === 0) {
    throw new InvalidArgumentError(`No usable preference pairs in ${rows.length} rows (identical responses: ${data.skippedIdentical}, ` +
      `empty response: ${data.skippedEmptyResponse}, prompt too long for maxLen ${o.maxLen}: ${data.skippedPromptTooLong})`);
  }

  const trainer = await openTrainer(o);
  try {
    const plan = planSteps(pairs.length, o.epochs, o.batch, o.gradAccum, o.seed);
    const pad = pairs[0]!.chosen.tokens[0]!;
    const batchOf = (ids: readonly number[]) => makeBatch(ids.flatMap((i) => [pairs[i]!.chosen, pairs[i]!.rejected]), pad);
    // Reference log-probs per pair: [chosen, rejected] (DPO only), from the starting adapter.
    let reference: number[] = [];
    const { onProgress: _p, signal: _s, log: _l, checkpoint: _c, checkpointEvery: _e, resume: _r, maxSteps: _m, threads: _t, out: _o, ...runOptions } = o;
    return await runTrainingLoop({
      kind, options: o, trainer, plan, data,
      shape: { sequences: 2 * Math.min(o.batch, pairs.length), tokens: pairs.reduce((m, p) => Math.max(m, p.chosen.tokens.length, p.rejected.tokens.length), 0), pairs: true },
      identity: { options: runOptions, beta, lambda, pairs: pairs.map((p) => [p.chosen.nPrompt, p.chosen.tokens, p.rejected.nPrompt, p.rejected.tokens]) },
      async runState(resumed) {
        if (kind !== 'dpo') return undefined;
        if (resumed !== undefined) {
          const ref = (resumed as { reference?: unknown }).reference;
          if (!Array.isArray(ref) || ref.length !== 2 * pairs.length || !ref.every((x) => typeof x === 'number' && Number.isFinite(x))) {
            throw new CheckpointError(`${o.resume} carries no valid DPO reference log-probs`);
          }
          reference = ref as number[];
        } else {
          reference = await referenceLogprobs(trainer, pairs, o, batchOf);
          const bad = reference.findIndex((x) => !Number.isFinite(x));
          if (bad >= 0) {
            throw new TrainingDivergedError(`The reference log-prob of the ${bad % 2 ? 'rejected' : 'chosen'} response of data row ` +
              `${tokenized.kept[bad >> 1]! + 1} is ${reference[bad]}: the starting model (${o.model}${o.lora ? ` + ${o.lora}` : ''}) ` +
              'gives non-finite values on it; remove the row or fix the model');
          }
        }
        return { reference };
      },
      async runMicro(micro, step) {
        const stepPairs = step.micro.reduce((a, m) => a + m.length, 0);
        const batch = batchOf(micro);
        const refLogps = kind === 'dpo' ? Float64Array.from(micro.flatMap((i) => [reference[2 * i]!, reference[2 * i + 1]!])) : undefined;
        let r;
        try {
          r = await computeQueue.run(() => trainer.accumulatePairs({ ...batch, kind, beta, lambda, lossScale: 1 / stepPairs, ...(refLogps ? { refLogps } : {}) }), { threads: o.threads });
        } catch (err) {
          throw mapNativeError(err, `${kind} step`);
        }
        return { loss: r.lossSum / stepPairs, tokens: batch.nTokens, metrics: pairMetrics(kind, beta, micro, pairs, r.logps, refLogps, stepPairs) };
      },
    });
  } finally {
    trainer.dispose();
  }
}

/** Σ log p of every pair's chosen and rejected response under the trainer's current (starting) adapter. */
async function referenceLogprobs(trainer: NativeTrainer, pairs: readonly TokenizedPair[], o: ResolvedTrainOptions,
                                 batchOf: (ids: readonly number[]) => ReturnType<typeof makeBatch>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < pairs.length; i += o.batch) {
    if (o.signal?.aborted) throw new AbortError('Training was aborted while computing the DPO reference log-probs');
    const ids = Array.from({ length: Math.min(o.batch, pairs.length - i) }, (_, k) => i + k);
    const batch = batchOf(ids);
    try {
      out.push(...(await computeQueue.run(() => trainer.sequenceLogprobs({ ...batch, useLora: true }), { threads: o.threads })));
    } catch (err) {
      throw mapNativeError(err, 'DPO reference log-probs');
    }
  }
  return out;
}

/**
 * The step's reward metrics, each a sum over this micro-batch's pairs divided by the step's pair count (so the
 * loop's sum over micro-batches is the step mean). DPO rewards: β·(log πθ - log πref) per response; ORPO
 * rewards: log odds of each response's length-averaged log-prob. Accuracy: share of pairs with a positive margin.
 */
function pairMetrics(kind: Kind, beta: number, micro: readonly number[], pairs: readonly TokenizedPair[], logps: Float64Array,
                     ref: Float64Array | undefined, stepPairs: number): Record<string, number> {
  const m: Record<string, number> = {
    'rewards/chosen': 0, 'rewards/rejected': 0, 'rewards/margins': 0, 'rewards/accuracies': 0, 'logps/chosen': 0, 'logps/rejected': 0,
    ...(kind === 'orpo' ? { nll_loss: 0, log_odds_ratio: 0 } : {}),
  };
  micro.forEach((id, k) => {
    const lc = logps[2 * k]!;
    const lr = logps[2 * k + 1]!;
    const p = pairs[id]!;
    let rc: number;
    let rr: number;
    if (kind === 'dpo') {
      rc = beta * (lc - ref![2 * k]!);
      rr = beta * (lr - ref![2 * k + 1]!);
    } else {
      const nc = p.chosen.tokens.length - p.chosen.nPrompt;
      const nr = p.rejected.tokens.length - p.rejected.nPrompt;
      rc = orpoLogOdds(lc / nc);
      rr = orpoLogOdds(lr / nr);
      m.nll_loss! += -lc / nc / stepPairs;
      m.log_odds_ratio! += logSigmoid(rc - rr) / stepPairs;
    }
    m['rewards/chosen']! += rc / stepPairs;
    m['rewards/rejected']! += rr / stepPairs;
    m['rewards/margins']! += (rc - rr) / stepPairs;
    m['rewards/accuracies']! += (rc > rr ? 1 : 0) / stepPairs;
    m['logps/chosen']! += lc / stepPairs;
    m['logps/rejected']! += lr / stepPairs;
  });
  return m;
}

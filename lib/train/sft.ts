// trainSft: LoRA supervised fine-tuning with prompt masking (mean cross-entropy over response tokens of
// each optimizer step) on the native training engine.
import { InvalidArgumentError } from '../errors.js';
import { computeQueue } from '../job-queue.js';
import { mapNativeError } from '../native.js';
import { makeBatch, planSteps } from './batches.js';
import { runTrainingLoop, type TrainResult } from './loop.js';
import { checkTrainPaths, resolveTrainOptions, type TrainOptions } from './options.js';
import { readSftExamples, tokenizeSft, type SftExample } from './sft-data.js';
import { openTrainer, tokenizeWithVocab } from './setup.js';

export interface SftOptions extends TrainOptions {
  /** JSONL/JSON file of {prompt, response} or {content, output} rows, or the rows themselves. */
  data: string | readonly SftExample[];
}

export async function trainSft(options: SftOptions): Promise<TrainResult> {
  const o = resolveTrainOptions(options);
  await checkTrainPaths(o, options.data);
  const rows = typeof options.data === 'string' ? await readSftExamples(options.data) : options.data;
  if (!Array.isArray(rows)) throw InvalidArgumentError.expected('file path or array of {prompt, response}', 'data', options.data);
  const tokenized = await tokenizeWithVocab(o, (vocab) => tokenizeSft(vocab, rows, o.maxLen, o.parseSpecial));
  const examples = tokenized.examples;
  if (examples.length === 0) throw new InvalidArgumentError(`No usable training examples in ${rows.length} rows (prompt too long: ${tokenized.skippedPromptTooLong}, empty response: ${tokenized.skippedEmptyResponse})`);

  const trainer = await openTrainer(o);
  try {
    const plan = planSteps(examples.length, o.epochs, o.batch, o.gradAccum, o.seed);
    // Targets of the current step, so each micro-batch's loss is weighted for the step's mean over response
    // tokens (one entry: a map over all steps would grow with the run).
    let stepTargets = { key: -1, n: 0 };
    const targetsOf = (ids: number[]) => ids.reduce((a, i) => a + examples[i]!.tokens.length - examples[i]!.nPrompt, 0);
    const pad = examples[0]!.tokens[0]!;
    const { onProgress: _p, signal: _s, log: _l, checkpoint: _c, checkpointEvery: _e, resume: _r, maxSteps: _m, threads: _t, out: _o, ...runOptions } = o;
    return await runTrainingLoop({
      kind: 'sft', options: o, trainer, plan,
      shape: { sequences: Math.min(o.batch, examples.length), tokens: examples.reduce((m, e) => Math.max(m, e.tokens.length), 0), pairs: false },
      identity: { options: runOptions, examples: examples.map((e) => [e.nPrompt, e.tokens]) },
      data: { rows: rows.length, examples: examples.length, skippedPromptTooLong: tokenized.skippedPromptTooLong, skippedEmptyResponse: tokenized.skippedEmptyResponse, truncated: tokenized.truncated },
      async runMicro(micro, step, key) {
        if (stepTargets.key !== key) stepTargets = { key, n: step.micro.reduce((a, m) => a + targetsOf(m), 0) };
        const n = stepTargets.n;
        const batch = makeBatch(micro.map((i) => examples[i]!), pad);
        try {
          const r = await computeQueue.run(() => trainer.accumulate({ ...batch, lossScale: 1 / n }), { threads: o.threads });
          return { loss: r.lossSum / n, tokens: batch.nTokens };
        } catch (err) {
          throw mapNativeError(err, 'training step');
        }
      },
    });
  } finally {
    trainer.dispose();
  }
}
